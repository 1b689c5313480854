"""What an earlier job was asked (``PastRequest``): Again and another ratio repeat it, on any platform,
after any restart, from the ledger entry and the stored image alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath

from core.artifacts import is_artifact_id
from core.models import Artifact, Reference, RequestSummary

__all__ = ["PastRequest"]


@dataclass(frozen=True, slots=True)
class PastRequest:
    """What a job was asked, for Again and another ratio: the image it made (None for a job that made
    none), the request as recorded (None for images older than the ledger entry), and the front-end's
    origin data."""

    artifact: Artifact | None
    summary: RequestSummary | None
    origin: Mapping[str, object]

    @property
    def prompt(self) -> str:
        if self.summary is not None:
            return self.summary.prompt
        return self.artifact.prompt if self.artifact is not None else ""

    def references(self) -> tuple[Reference, ...]:
        """The images the job worked on, as references that can be used again: stored images by id,
        stored files by path. Uploads that were not kept are left out."""
        sources = self.summary.references if self.summary is not None else ()
        if not sources and self.artifact is not None and self.artifact.parent_id:
            sources = (self.artifact.parent_id,)
        kept: list[Reference] = []
        for source in sources:
            stem = PurePath(source).stem
            if is_artifact_id(source) or is_artifact_id(stem):
                kept.append(Reference(artifact_id=source if is_artifact_id(source) else stem))
            elif PurePath(source).is_absolute():
                kept.append(Reference(path=source))
        return tuple(kept)

    @property
    def lost_uploads(self) -> bool:
        """The job used uploaded images that were not kept, so it cannot be repeated faithfully."""
        sources = self.summary.references if self.summary is not None else ()
        return any(s.startswith("upload:") for s in sources)
