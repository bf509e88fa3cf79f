"""What a gallery is and what it hands out: the format names, the :class:`ModelKey` a gallery is bound to, the
records reads return (:class:`Match`, :class:`IdentityInfo`, :class:`TemplateRecord`, :class:`AuditEntry`,
:class:`PhotoInfo`, :class:`SourceImage`) and the rule that files a template under its resolution level."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from crres_sdk.policy import template_level

FORMAT = "crres-gallery/2"
#: The format before integrity keys: upgraded in place by a writable open.
FORMAT_V1 = "crres-gallery/1"


@dataclass(frozen=True)
class ModelKey:
    """The embedding model a gallery is bound to: templates of different models are not comparable."""

    name: str
    version: str
    dim: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"ModelKey.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.version, str) or not self.version.strip():
            raise ValueError(f"ModelKey.version must be a non-empty string, got {self.version!r}")
        if isinstance(self.dim, bool) or not isinstance(self.dim, (int, np.integer)) or self.dim <= 0:
            raise ValueError(f"ModelKey.dim must be a positive integer, got {self.dim!r}")
        object.__setattr__(self, "dim", int(self.dim))

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> ModelKey:
        """The key of an embedding bundle's manifest (``name``, ``version``, ``embedding_dim``)."""
        try:
            return cls(str(manifest["name"]), str(manifest["version"]), int(manifest["embedding_dim"]))
        except KeyError as exc:
            raise ValueError(f"manifest has no {exc.args[0]!r}: not an embedding model manifest") from None

    @classmethod
    def from_bundle(cls, bundle: Any) -> ModelKey:
        """The key of a loaded :class:`crres_sdk.ModelBundle` of task ``face-embedding``."""
        return cls.from_manifest(bundle.manifest)

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.dim}-d)"


@dataclass(frozen=True)
class Match:
    """One candidate for a probe: fused cosine score over the identity's templates at ``template_resolution``."""

    identity: str
    score: float
    template_resolution: float


@dataclass(frozen=True)
class IdentityInfo:
    name: str
    n_templates: int
    resolutions: tuple[float, ...]  # distinct resolution levels stored, ascending
    created: float  # unix time
    updated: float
    metadata: dict = field(default_factory=dict)
    n_thumbnails: int = 0


class TemplateRecord(NamedTuple):
    identity: str
    template_id: int
    vector: np.ndarray  # (dim,) float32
    resolution: float
    source_hash: str | None


class AuditEntry(NamedTuple):
    time: float
    action: str
    identity: str | None
    count: int
    detail: str | None


@dataclass(frozen=True)
class PhotoInfo:
    """One enrolment photo of an identity: the templates made from it (its HR crop and its degraded versions)."""

    source_hash: str | None   # sha256 of the decoded photo (None: templates enrolled without a source hash)
    n_templates: int
    resolution: float         # the highest resolution among its templates: the face's own probe resolution
    created: float            # unix time of its enrolment


@dataclass(frozen=True)
class SourceImage:
    """A stored source image (thumbnails=True galleries) handed to :meth:`Gallery.reembed`'s ``embed_fn``."""

    source_hash: str
    image: bytes  # as enrolled, e.g. PNG bytes of the aligned 112x112 crop


def resolution_level(resolution: float | np.ndarray) -> np.ndarray:
    """The level a template of this resolution is filed under: whole pixels, capped at the crop size
    (:data:`crres_sdk.preprocess.TEMPLATE_SIZE`; :func:`crres_sdk.policy.template_level`)."""
    return template_level(resolution)
