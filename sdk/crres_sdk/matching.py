"""One matcher interface for ``identify``, ``match``, ``verify`` and :class:`VideoPipeline`.

A matcher turns probes into :class:`MatchResult` records (candidates, threshold, decision, the resolution the
probe was matched at and how the threshold was derived). Two implementations:

* :class:`PlainMatcher` — gallery search (per probe resolution, each identity's templates at the level nearest the
  probe or its HR templates, as the policy's pairing decides; S_max or S_add) with the 1:N threshold policy of
  :mod:`crres_sdk.policy` (``fpir``; or a fixed per-pair ``far`` when the recognizer was built with ``fpir=None``). Matches embeddings (``match_embeddings``) or faces in
  a frame (``match_faces``).
* :class:`MitmMatcher` — meet-in-the-middle (Grm et al.): multi-hypothesis probes from the face crop against the
  gallery's degradation hypotheses; needs the crop, so only ``match_faces``. Its fused scores have no manifest
  thresholds: decision ``"ranked"`` unless the recognizer has a ``mitm_threshold``.

Both use the same decision rule (:func:`decide`): no gallery -> ``"no-gallery"``; a face below the lowest
calibrated resolution -> ``"too-small"`` (candidates ranked, never a name); else ``"match"`` when the best score
exceeds the threshold, ``"unknown"`` otherwise (``"ranked"`` for an uncalibrated MITM).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from crres_sdk.face import Face
from crres_sdk.gallery import Match
from crres_sdk.policy import face_resolution
from crres_sdk.preprocess import TEMPLATE_SIZE

if TYPE_CHECKING:  # pragma: no cover
    from crres_sdk.recognizer import Recognizer


@dataclass(frozen=True)
class MatchResult:
    """What matching one probe decided.

    ``candidates`` best first; ``threshold`` the score the best candidate had to exceed (None: no calibrated
    threshold); ``decision`` one of ``"match"``, ``"unknown"``, ``"too-small"``, ``"no-gallery"``, ``"ranked"``;
    ``probe_resolution`` the r it was matched at; ``matcher`` ``"plain"`` or ``"mitm"``; ``per_pair_far`` and
    ``comparisons`` how a 1:N threshold was derived (FAR = fpir / comparisons), None otherwise; ``pairing``
    ``"matched"`` or ``"hr"``: which gallery templates the plain matcher compared the probe with.

    Unpacks as the legacy ``(candidates, threshold, decision)`` triple.
    """

    candidates: list[Match]
    threshold: float | None
    decision: str
    probe_resolution: float
    matcher: str = "plain"
    per_pair_far: float | None = None
    comparisons: int | None = None
    fpir: float | None = None
    pairing: str | None = None

    @property
    def identity(self) -> str | None:
        """The name decided: the best candidate when ``"match"`` (or ``"ranked"``), else None."""
        return self.candidates[0].identity if self.candidates and self.decision in ("match", "ranked") else None

    @property
    def score(self) -> float | None:
        return float(self.candidates[0].score) if self.candidates else None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.candidates, self.threshold, self.decision))

    def apply(self, face: Face, **extra: Any) -> Face:
        """Write the result into a face record: identity, match_score, decision and ``face.match``; the legacy
        ``extra`` keys (candidates, threshold, probe_resolution) mirror it for older callers."""
        face.identity, face.match_score, face.decision, face.match = self.identity, self.score, self.decision, self
        face.extra.update(candidates=self.candidates, threshold=self.threshold,
                          probe_resolution=self.probe_resolution, **extra)
        return face


def decide(candidates: Sequence[Match], r: float, threshold: float | None, *, has_gallery: bool,
           too_small: bool, ranked: bool = False) -> str:
    """The decision rule every matcher applies (module docstring)."""
    if not has_gallery:
        return "no-gallery"
    if too_small:
        return "too-small"
    if ranked:
        return "ranked"
    if threshold is None or not candidates:
        return "unknown"
    return "match" if candidates[0].score > threshold else "unknown"


def verify_decision(rec: "Recognizer", score: float, r: float) -> tuple[float | None, bool | None]:
    """1:1: (threshold, same) for a pair whose lower resolution is ``r``: the manifest's 1:1 threshold at the
    per-pair ``far``; no decision (None, None) without thresholds or below the lowest calibrated resolution."""
    policy = rec.policy
    if policy is None or policy.too_small(r):
        return None, None
    t = float(policy.verify_threshold(r, rec.far_rate))
    return t, bool(score > t)


class PlainMatcher:
    """Gallery search at the policy's pairing with the recognizer's threshold policy."""

    kind = "plain"

    def __init__(self, rec: "Recognizer") -> None:
        self.rec = rec

    def verify(self, score: float, r: float) -> tuple[float | None, bool | None]:
        return verify_decision(self.rec, score, r)

    def hr_pairing(self, r: float) -> bool:
        """Whether a probe at ``r`` is compared with HR templates (:meth:`ThresholdPolicy.hr_pairing`)."""
        rec = self.rec
        if rec.policy is None:
            return rec.pairing == "hr"
        return rec.policy.hr_pairing(r, rec.pairing)

    def search_resolution(self, r: float) -> float:
        """The resolution the gallery search picks each identity's level for: the crop size for HR pairing."""
        return float(TEMPLATE_SIZE) if self.hr_pairing(r) else float(r)

    def threshold(self, r: float) -> tuple[float | None, float | None, int | None]:
        """(threshold, per-pair FAR, comparisons) for a probe at ``r`` against the current gallery."""
        rec = self.rec
        policy = rec.policy
        if policy is None:
            return None, None, None
        if rec.fpir is None:
            return float(policy.verify_threshold(r, rec.far_rate)), rec.far_rate, None
        hr = self.hr_pairing(r)
        m = rec.gallery.comparisons(self.search_resolution(r), rec.fusion) if rec.gallery is not None else 0
        t, f = policy.identify_threshold(r, rec.fpir, max(m, 1), hr=hr)
        return t, f, m

    def match_embeddings(self, embeddings: np.ndarray, resolutions: Sequence[float] | np.ndarray, *,
                         top_k: int = 1) -> list[MatchResult]:
        rec = self.rec
        embeddings = np.asarray(embeddings, np.float32)
        resolutions = np.asarray(resolutions, np.float64).reshape(-1)
        if embeddings.ndim != 2 or embeddings.shape[1] != rec.embedding_dim or len(embeddings) != len(resolutions):
            raise ValueError(f"embeddings must be (N, {rec.embedding_dim}) with N resolutions")
        has_gallery = rec.gallery is not None and len(rec.gallery) > 0
        hr = [self.hr_pairing(r) for r in resolutions.tolist()]
        search_at = np.where(hr, float(TEMPLATE_SIZE), resolutions)
        cands = rec.gallery.search(embeddings, search_at, top_k=top_k, fusion=rec.fusion) \
            if has_gallery and len(embeddings) else [[] for _ in range(len(embeddings))]
        out, memo = [], {}
        for c, r, at_hr in zip(cands, resolutions.tolist(), hr):
            if r not in memo:
                memo[r] = self.threshold(r) if has_gallery else (
                    None if rec.policy is None else float(rec.policy.verify_threshold(r, rec.far_rate)), None, None)
            t, f, m = memo[r]
            too_small = rec.policy is not None and rec.policy.too_small(r)
            out.append(MatchResult(list(c), t, decide(c, r, t, has_gallery=has_gallery, too_small=too_small),
                                   float(r), self.kind, f, m, rec.fpir if has_gallery else None,
                                   "hr" if at_hr else "matched"))
        return out

    def match_faces(self, frame: np.ndarray, faces: list[Face], *, top_k: int = 1,
                    embeddings: np.ndarray | None = None) -> list[MatchResult]:
        if not faces:
            return []
        emb = self.rec.embed(frame, faces) if embeddings is None else embeddings
        return self.match_embeddings(emb, [face_resolution(f) for f in faces], top_k=top_k)


class MitmMatcher:
    """Meet-in-the-middle matching of face crops (see :mod:`crres_sdk.mitm`)."""

    kind = "mitm"

    def __init__(self, rec: "Recognizer", engine: Any) -> None:
        self.rec, self.engine = rec, engine

    def verify(self, score: float, r: float) -> tuple[float | None, bool | None]:
        """1:1 pairs have no gallery hypotheses to meet: decided on the plain embeddings' cosine."""
        return verify_decision(self.rec, score, r)

    def match_embeddings(self, embeddings: np.ndarray, resolutions: Any, *, top_k: int = 1) -> list[MatchResult]:
        raise TypeError("meet-in-the-middle matching needs the face crops, not embeddings: use match_faces(frame, "
                        "faces) (Recognizer.identify / VideoPipeline do)")

    def match_faces(self, frame: np.ndarray, faces: list[Face], *, top_k: int = 1,
                    embeddings: np.ndarray | None = None) -> list[MatchResult]:
        from crres_sdk.preprocess import align_faces_uint8

        rec = self.rec
        stacked = {} if rec.gallery is None else rec.gallery.templates_by_identity()
        out = []
        for face in faces:
            r = face_resolution(face)
            too_small = rec.policy is not None and rec.policy.too_small(r)
            if not stacked:
                out.append(MatchResult([], rec.mitm_threshold, "no-gallery", r, self.kind))
                continue
            crop = align_faces_uint8(frame, face.landmarks.astype(np.float64))
            scores = self.engine.scores(self.engine.probe_templates(crop, r), stacked)
            ranked = sorted(scores.items(), key=lambda kv: -kv[1])[:top_k]
            cands = [Match(n, float(v), float(r)) for n, v in ranked]
            t = rec.mitm_threshold
            out.append(MatchResult(cands, t, decide(cands, r, t, has_gallery=True, too_small=too_small,
                                                    ranked=t is None), r, self.kind))
        return out


__all__ = ["MatchResult", "MitmMatcher", "PlainMatcher", "decide", "verify_decision"]
