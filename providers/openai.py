"""OpenAI Images: JSON /images/generations, GPT-image edits as multipart, the per-family size tables."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from core.errors import ConfigError, Unsupported
from core.provider import Capabilities, ProviderRequest, ProviderResult, ReferenceImage
from providers.base import GPT_IMAGE_SIZES, HttpProvider, openai_images

__all__ = ["MAX_EDIT_IMAGES", "OpenAIProvider", "edit_files", "form_fields", "multipart_headers", "openai_size"]

log = logging.getLogger(__name__)

_PREFIXES: Final = ("openai/", "openai_codex/")
_WXH: Final = re.compile(r"^\d+x\d+$")
_DALLE3_SIZES: Final[dict[str, str]] = {
    "1:1": "1024x1024",
    "16:9": "1792x1024",
    "4:3": "1792x1024",
    "9:16": "1024x1792",
    "3:4": "1024x1792",
}
#: OpenAI's GPT-image edits accept up to 16 input images.
MAX_EDIT_IMAGES: Final = 16


@dataclass(frozen=True, slots=True)
class _Family:
    """One OpenAI model family: which sizes it takes and how a ratio becomes a size."""

    gpt_image: bool
    sizes: frozenset[str] | None  # None: any <digits>x<digits>
    ratios: Mapping[str, str]

    def accepts(self, size: str) -> bool:
        return bool(_WXH.match(size)) if self.sizes is None else size in self.sizes


_DALLE2: Final = _Family(False, frozenset({"256x256", "512x512", "1024x1024"}), {})
_DALLE3: Final = _Family(False, frozenset(_DALLE3_SIZES.values()), _DALLE3_SIZES)
_GPT_IMAGE_2: Final = _Family(True, None, GPT_IMAGE_SIZES)
_GPT_IMAGE: Final = _Family(True, frozenset({*GPT_IMAGE_SIZES.values(), "auto"}), GPT_IMAGE_SIZES)
_OTHER: Final = _Family(False, _GPT_IMAGE.sizes, GPT_IMAGE_SIZES)


def _model_name(model: str) -> str:
    for prefix in _PREFIXES:
        if model.startswith(prefix):
            return model.removeprefix(prefix)
    return model


def _family(model: str) -> _Family:
    lowered = _model_name(model).lower()
    if lowered.startswith("dall-e-2"):
        return _DALLE2
    if lowered.startswith("dall-e-3"):
        return _DALLE3
    if lowered.startswith("gpt-image-2"):
        return _GPT_IMAGE_2
    if lowered.startswith(("gpt-image", "chatgpt-image")):
        return _GPT_IMAGE
    return _OTHER


def openai_size(model: str, size: str | None, ratio: str | None) -> str:
    """A size hint the family supports (trimmed, lower-cased) wins; else the family's ratio table."""
    family = _family(model)
    hint = (size or "").strip().lower()
    if hint and family.accepts(hint):
        return hint
    if hint:
        log.debug("openai: size %r is not supported by %s; using the aspect ratio", hint, model)
    return family.ratios.get(ratio or "", "1024x1024")


def form_fields(body: Mapping[str, Any], provider: str) -> dict[str, str]:
    """Scalar body values as multipart form fields (bools as true/false). Objects and lists have no
    form encoding, and multipart has no null, so those are dropped (objects/lists with a warning)."""
    fields: dict[str, str] = {}
    for key, value in body.items():
        if value is None:
            continue
        if isinstance(value, bool):
            fields[key] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            fields[key] = str(value)
        else:
            log.warning("%s: dropping non-scalar field %r from the edits form", provider, key)
    return fields


def multipart_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers for a multipart upload: httpx must write Content-Type itself (it carries the boundary),
    so a JSON Content-Type from extraHeaders is left out."""
    return {key: value for key, value in headers.items() if key.lower() != "content-type"}


def edit_files(references: Iterable[ReferenceImage]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """One ``image[]`` file part per reference, as OpenAI's edits endpoint expects."""
    return [("image[]", (ref.name, ref.data, ref.mime)) for ref in references]


class OpenAIProvider(HttpProvider):
    """api.openai.com Images: DALL·E 2/3 and GPT-image; references only for GPT-image (edits)."""

    name: ClassVar[str] = "openai"
    default_model: ClassVar[str] = "gpt-image-1"
    default_base: ClassVar[str | None] = "https://api.openai.com/v1"
    default_timeout: ClassVar[float] = 120.0

    def capabilities(self, model: str) -> Capabilities:
        family = _family(model)
        if family is _DALLE2:
            return Capabilities(ratios=frozenset(), sizes=family.sizes, max_references=0,
                                ratio_fallback="square 1024x1024", size_fallback="1024x1024")
        return Capabilities(
            ratios=frozenset(family.ratios),
            sizes=family.sizes,
            pixel_sizes_only=family.sizes is None,
            max_references=MAX_EDIT_IMAGES if family.gpt_image else 0,
            size_overrides_ratio=True,
            ratio_fallback="1:1 (1024x1024)",
            size_fallback="the size for the aspect ratio",
        )

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        """The request body: defaults, extraBody merged, then null-valued keys dropped."""
        family = _family(request.model)
        body: dict[str, Any] = {"model": _model_name(request.model), "prompt": request.prompt}
        if not family.gpt_image:
            body["response_format"] = "b64_json"
            body["n"] = 1
        body["size"] = openai_size(request.model, request.size, request.aspect_ratio)
        body.update(self.extra_body)
        return {key: value for key, value in body.items() if value is not None}

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        if not self.api_key:
            raise ConfigError("OpenAI API key is not configured. Set providers.openai.apiKey.")
        family = _family(request.model)
        if request.references and not family.gpt_image:
            raise Unsupported(f"OpenAI model '{_model_name(request.model)}' does not support reference "
                              "images; use a GPT Image model.", provider=self.name)
        body = self.body(request)
        if request.references:
            data = await self.send(
                "POST", f"{self.base_url}/images/edits", data=form_fields(body, self.name),
                files=edit_files(request.references),
                headers=multipart_headers(self.headers(json_body=False)),
            )
        else:
            data = await self.post_json(f"{self.base_url}/images/generations", body)
        payload = self.require_mapping(data)
        return self.result(await openai_images(self, payload), payload)
