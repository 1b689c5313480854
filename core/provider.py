"""The provider contract: what the core hands an adapter, what it gets back, what a model can do.

The core depends on this Protocol only; adapters live in ``providers/`` and never see chats.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "Capabilities",
    "ImageProvider",
    "ProviderRequest",
    "ProviderResult",
    "ReferenceImage",
]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one provider/model accepts.

    ``ratios``/``sizes``: ``None`` means any well-formed value is passed through; an empty set
    means the setting is not used at all (ignored); otherwise only the listed values are sent.
    """

    ratios: frozenset[str] | None = None
    sizes: frozenset[str] | None = None
    max_references: int = 0
    #: True when an explicit size hint makes the provider ignore the aspect ratio (custom's ``1K``):
    #: the service then drops the *default* size when the user asked for a ratio explicitly.
    size_overrides_ratio: bool = False
    #: Only pixel sizes (``WxH``) are used: any ``WxH`` is sent, other hints (``1K``, ``2K``) are ignored.
    pixel_sizes_only: bool = False
    #: Shown when a setting is ignored: what the model does instead ("uses 1:1", "default size").
    ratio_fallback: str = "the model's default"
    size_fallback: str = "the model's default"

    @property
    def edits(self) -> bool:
        return self.max_references > 0

    def to_dict(self) -> dict[str, object]:
        return {
            "ratios": sorted(self.ratios) if self.ratios is not None else "any",
            "sizes": sorted(self.sizes) if self.sizes is not None else ("any WxH" if self.pixel_sizes_only else "any"),
            "max_references": self.max_references,
            "edits": self.edits,
        }


@dataclass(frozen=True, slots=True)
class ReferenceImage:
    """A validated reference image, read once and shared by every slot of a job."""

    data: bytes = field(repr=False)
    mime: str
    name: str = "image.png"
    path: str | None = None

    def b64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{self.b64()}"


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """One call to a provider, already normalised onto its capabilities."""

    prompt: str
    model: str
    aspect_ratio: str | None = None
    size: str | None = None
    references: tuple[ReferenceImage, ...] = ()


@dataclass(slots=True)
class ProviderResult:
    """Decoded image bytes (never data URLs) and any text the model said alongside them."""

    images: list[bytes]
    text: str = ""


@runtime_checkable
class ImageProvider(Protocol):
    @property
    def name(self) -> str:
        """The registry name (``openrouter``, ``custom``, …)."""
        ...

    @property
    def default_model(self) -> str:
        """The model used when the config names none for this provider."""
        ...

    def capabilities(self, model: str) -> Capabilities:
        """What ``model`` accepts on this provider."""
        ...

    def missing(self) -> list[str]:
        """Config keys that must be set before this provider can be called (empty when ready)."""
        ...

    async def generate(self, request: ProviderRequest) -> ProviderResult:
        """Return at least one image or raise a PixbotError; never an empty result,
        never a raw httpx error."""
        ...

    async def aclose(self) -> None: ...
