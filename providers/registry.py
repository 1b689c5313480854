"""The explicit provider table: registry name → adapter class. The composition root is its only user."""

from __future__ import annotations

from providers.aihubmix import AIHubMixProvider
from providers.base import HttpProvider
from providers.custom import CustomProvider
from providers.gemini import GeminiProvider
from providers.minimax import MiniMaxProvider
from providers.modelscope import ModelScopeProvider
from providers.ollama import OllamaProvider
from providers.openai import OpenAIProvider
from providers.openrouter import OpenRouterProvider
from providers.stepfun import StepFunProvider
from providers.zhipu import ZhipuProvider

__all__ = ["PROVIDERS"]

#: Same order as nanobot's registration (minus openai_codex, which needs nanobot's OAuth login).
PROVIDERS: dict[str, type[HttpProvider]] = {
    "aihubmix": AIHubMixProvider,
    "custom": CustomProvider,
    "gemini": GeminiProvider,
    "ollama": OllamaProvider,
    "minimax": MiniMaxProvider,
    "openai": OpenAIProvider,
    "openrouter": OpenRouterProvider,
    "stepfun": StepFunProvider,
    "zhipu": ZhipuProvider,
    "modelscope": ModelScopeProvider,
}
