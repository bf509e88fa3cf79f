"""The camera-app entry point: detection -> alignment -> embedding -> resolution-aware gallery matching.

    from crres_sdk import Recognizer

    rec = Recognizer(gallery="people.db")                  # the default model bundle, fastest backend here
    rec.enroll("alice", ["alice1.jpg", alice2_bgr])       # HR templates + templates of degraded crops
    for face in rec.identify(frame):                      # uint8 H x W x 3 BGR
        print(face.identity, face.match_score, face.decision, face.equivalent_resolution)

Every face is matched at its own resolution: a probe of resolution r (the blind estimate of what the crop
really carries when the estimator is present, else the geometric equivalent resolution) is compared with the
gallery templates made nearest r or with the HR templates, whichever the bundle's held-out calibration says
separates people better at r (``pairing``). Identification decides at a false positive identification rate (``fpir``,
default 0.01): the threshold for r is the manifest's at the per-pair rate fpir / M, M the templates the probe is
compared with (N identities x k photos); 1:1 ``verify`` decides at a per-pair ``far``. A face below the lowest
calibrated resolution gets decision ``"too-small"`` (ranked candidates, no name). :mod:`crres_sdk.policy` holds
the rules, :mod:`crres_sdk.matching` the matchers (plain and meet-in-the-middle) every entry point calls.

Thread safety: ``detect``/``embed``/``identify``/``verify`` may run from many threads at once; ``enroll`` and
the other gallery writes are serialised (one writer, many readers; the gallery is SQLite in WAL mode).
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from crres_sdk.backends import Session, auto_backends, open_model, resolve_backend
from crres_sdk.bundle import ModelBundle, find_bundle, load_bundle
from crres_sdk.detector import FaceDetector, check_image_size
from crres_sdk.errors import BundleError, FaceGeometryError
from crres_sdk.estimator import ResolutionEstimator
from crres_sdk.face import Face
from crres_sdk.gallery import Gallery, GalleryError, Match, ModelKey, PhotoInfo
from crres_sdk.matching import MatchResult, PlainMatcher
from crres_sdk.matching import MitmMatcher as MitmMatcherAdapter
from crres_sdk.policy import (GALLERY_LEVELS, MIN_ENROLL_RESOLUTION, PAIRINGS, ThresholdPolicy, enrolment_levels,
                              face_resolution, parse_rate)
from crres_sdk.preprocess import (ARCFACE_TEMPLATE, TEMPLATE_SIZE, align_faces, align_faces_uint8, degrade,
                                  equivalent_resolution)

DEFAULT_MODEL = "crres_default"
MODEL_ENV = "CRRES_MODEL_BUNDLE"
#: Resolutions (px) at which enrolment also stores templates of the degraded HR crop (gallery-side matching).
DEFAULT_GALLERY_RESOLUTIONS = GALLERY_LEVELS
#: (runtime, role) of a bundle file per (backend, precision), first present wins.
_FILE_CHOICES = {
    ("onnxruntime", "fp32"): [("onnx", "fp32")],
    ("onnxruntime", "int8"): [("onnx", "int8"), ("tensorrt", "qdq")],
    ("openvino", "fp32"): [("onnx", "fp32")],
    ("openvino", "int8"): [("openvino", "int8_xml"), ("onnx", "int8")],
    ("tensorrt", "int8"): [("tensorrt", "engine")],
    ("tensorrt", "fp32"): [("tensorrt", "engine")],
}
DECISIONS = ("match", "unknown", "too-small", "no-gallery", "ranked")
MATCHING = ("plain", "mitm")


def choose_model_file(files: dict, backend: str, precision: str = "auto") -> tuple[str, str, str] | None:
    """(precision, runtime, role) of the bundle file ``backend`` runs at ``precision`` (``"auto"``: INT8 when the
    bundle has an INT8 file for that backend, else FP32), or None when it has none; ``files`` is
    ``manifest["files"]``. What :class:`Recognizer` opens, and what ``evaluation`` measures for a bundle."""
    for prec in {"auto": ["int8", "fp32"], "fp32": ["fp32"], "int8": ["int8"]}[precision]:
        for runtime, role in _FILE_CHOICES[(backend, prec)]:
            if role in files.get(runtime, {}):
                return prec, runtime, role
    return None


class NoFaceError(ValueError):
    """An enrolment or verification image in which no face was found."""


class FaceTooSmallError(ValueError):
    """An enrolment face whose resolution is below the recognizer's ``min_enroll_resolution``."""


class AccuracyGateNotRunWarning(UserWarning):
    """An INT8 file whose export checked only embedding cosines, never verification accuracy."""


def _warn_if_accuracy_gate_not_run(manifest: dict, file_key: str) -> None:
    """INT8 accuracy can drop where cosine floors hold (a model whose scores crowd near 1 loses pairs at a cosine
    of 0.999), so an INT8 file no accuracy gate ran on says so when it is used. ``parity.accuracy_gate`` names the
    set ("lfw", "skimage-lfw-subset", or "not run" with a reason) and the files it gated (a TensorRT engine built
    on the device never is: its QDQ source was); bundles written before that record existed had only
    ``parity.lfw_accuracy`` ("status": "run" and the gated "files")."""
    parity = manifest.get("parity") or {}
    gate = parity.get("accuracy_gate")
    if not isinstance(gate, dict):
        lfw = parity.get("lfw_accuracy") or {}
        status = str(lfw.get("status", "no accuracy record"))  # "run" or "not run (why)"
        reason = status[len("not run ("):-1] if status.startswith("not run (") and status.endswith(")") else status
        gate = {"set": "lfw", "files": lfw.get("files") or {}} if status == "run" else \
            {"set": "not run", "reason": reason}
    gated = gate.get("files") or {}
    if gate.get("set") in (None, "not run"):
        state = "not run" + (f" ({gate['reason']})" if gate.get("reason") else "")
    elif file_key not in gated:
        state = f"not run on this file (it ran on {gate['set']} for {', '.join(gated) or 'no file'})"
    else:
        return
    import warnings

    warnings.warn(f"model {manifest.get('name')!r}: {file_key} passed only the cosine parity floors; its "
                  f"accuracy gate was {state} (python -m export.build_engine runs it on LFW, or on scikit-image's "
                  "small face set without LFW); precision='fp32' avoids the INT8 file",
                  AccuracyGateNotRunWarning, stacklevel=4)


def find_model_bundle(model: str | os.PathLike = "default") -> Path:
    """``"default"`` -> $CRRES_MODEL_BUNDLE, else models/crres_default, else ~/.cache/crres/models/crres_default;
    a name -> that bundle in the same places; a path -> that folder."""
    if isinstance(model, os.PathLike) or (isinstance(model, str) and (os.sep in model or Path(model).is_dir())):
        path = Path(model)
        if not (path / "manifest.json").is_file():
            raise BundleError(f"{path} is not a model bundle (no manifest.json); pass a bundle folder written by "
                              "python -m export.build_engine")
        return path
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be 'default', a bundle name or a bundle folder, got {model!r}")
    name = DEFAULT_MODEL if model == "default" else model
    return find_bundle(name, MODEL_ENV if model == "default" else "CRRES_MODEL_" + name.upper(), None,
                       "Train and export one: training/experiments/default_model.sh, then "
                       "python -m export.build_engine --target fp32 ...")


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds per resolution at one false-accept rate, interpolated linearly in log r."""

    far: str
    resolutions: tuple[float, ...]
    values: tuple[float, ...]

    @classmethod
    def from_manifest(cls, manifest: dict, far: str, file_key: str | None) -> "Thresholds | None":
        spec = manifest.get("thresholds")
        if not spec:
            return None
        table = spec.get("by_file", {}).get(file_key, spec) if file_key else spec
        values = table.get("far", {}).get(far)
        if values is None:
            raise BundleError(f"model {manifest.get('name')!r} has no thresholds at FAR {far} "
                              f"(has: {', '.join(table.get('far', {})) or 'none'})")
        resolutions = spec["resolutions"]
        if len(values) != len(resolutions) or not all(math.isfinite(v) for v in values):
            raise BundleError(f"model {manifest.get('name')!r}: thresholds at FAR {far} do not match its resolutions")
        return cls(far, tuple(float(r) for r in resolutions), tuple(float(v) for v in values))

    def at(self, resolution: float | np.ndarray) -> np.ndarray:
        r = np.clip(np.log(np.maximum(np.asarray(resolution, np.float64), 1.0)),
                    math.log(self.resolutions[0]), math.log(self.resolutions[-1]))
        return np.interp(r, np.log(self.resolutions), self.values)


@dataclass(frozen=True)
class Verification:
    score: float
    threshold: float | None
    same: bool | None               # None when the model has no thresholds
    resolution: float               # the lower of the two faces' resolutions (what the threshold is taken at)
    faces: tuple[Face, Face]


class Recognizer:
    """Face recognition across resolutions. See the module docstring.

    Args:
        model: ``"default"``, a bundle name under ``models/`` or a bundle folder (``manifest.json`` + files).
        detector: a :class:`FaceDetector`, a dict of its arguments (e.g. ``{"min_face": 20}``), or None for the
            default MTCNN (12 px minimum face).
        backend: ``"auto"`` (a bundle's TensorRT engine when TensorRT is installed, else OpenVINO, else ONNX
            Runtime), ``"onnxruntime"``, ``"openvino"`` or ``"tensorrt"``.
        device: ``"auto"`` (the bundle's TensorRT engine on the GPU when it runs here, else the CPU; the rule is
            :func:`crres_sdk.backends.auto_backends`), ``cpu``/``cuda``/``tensorrt`` (ONNX Runtime execution
            providers), ``cpu``/``gpu``/``npu`` (OpenVINO). An explicit ``"cpu"`` never picks TensorRT.
        precision: ``"auto"`` (INT8 when the bundle has an INT8 file for the backend, else FP32), ``"fp32"``,
            ``"int8"``.
        gallery: a gallery file path (created when missing) or an open :class:`Gallery`; None = no gallery.
        fpir: the false positive identification rate 1:N decisions keep (``identify``, ``match``, video): the
            chance that a stranger is named. The threshold for a probe at r is the manifest's at the per-pair
            rate fpir / M, M = the gallery templates it is compared with (identities x photos at the level
            nearest r; identities with S_add), from the bundle's 1:N table and impostor tail
            (:mod:`crres_sdk.policy`). None = decide 1:N at the per-pair ``far`` instead (the old behaviour,
            which names most strangers in a large gallery).
        far: the per-pair false-accept rate of 1:1 ``verify`` (a rate such as ``"1e-3"``; rates between or
            beyond the manifest's are interpolated in log FAR / extrapolated along its fitted tail).
        min_enroll_resolution: enrolment refuses faces whose resolution (effective, capped by the geometric
            one) is below this many px, naming the photo (FaceTooSmallError); None = no minimum.
        fusion: score fusion over an identity's templates at the chosen level, ``"max"`` (S_max) or ``"add"``.
        pairing: which gallery templates a probe at r is compared with: ``"matched"`` (the level nearest r),
            ``"hr"`` (each identity's best-resolution template) or ``"auto"`` (default: per r, the pairing with
            the higher held-out TAR in the bundle's manifest; :mod:`crres_sdk.policy`, "Pairing").
        gallery_resolutions: resolutions of the degraded templates stored at enrolment.
        key / key_file / key_env: at-rest encryption key for the gallery (see :class:`Gallery`).
        integrity_key_file: a plain gallery's integrity key when kept away from the gallery (default: beside it,
            ``<gallery>.integrity-key``, created with it).
        public_key: pin the bundle signing key (Ed25519, 64 hex characters or a file): the embedding and
            detector bundles must be signed by it (``export/signing.py``), else BundleError. Pins every bundle
            of the process, the resolution estimator's too, when set as ``$CRRES_BUNDLE_PUBLIC_KEY``.
        threads: CPU threads per inference call (None = backend default).
        batch_size: faces per inference call.
        matching: ``"plain"`` (one template per gallery resolution level, manifest thresholds) or ``"mitm"``
            (meet-in-the-middle, Grm et al.: gallery degradation hypotheses precomputed at enrolment, multi-
            hypothesis super-resolved probes, S_max then S_add; needs its own gallery; decisions are ``"ranked"``
            unless ``mitm_threshold`` is given).
        mitm_chains: degradation chains per enrolment image for ``"mitm"`` (a random sample of the 1463 of eq. 1;
            None = all, 0 = resolution matching only). Enrolment costs (chains + 1) x 7 embeddings per image.
        sr_models: folders with ``sr_x{2,4,8}.onnx`` face-SR models (``python -m training.sr``) for ``"mitm"``;
            None = bicubic upsampling.
        mitm_threshold: decision threshold on the fused ``"mitm"`` score (accept when score > threshold, as for
            plain matching); None = closed-set ranking only (decision ``"ranked"``). Fused scores are not
            distributed like the manifest's cosines, and their impostor distribution depends on the model, the SR
            models and the number of chains: calibrate it for the setup you run (``docs/mitm.md`` lists the
            thresholds measured by ``python -m training.experiments.mitm_eval``).
    """

    def __init__(
        self,
        model: str | os.PathLike = "default",
        *,
        detector: FaceDetector | dict | None = None,
        backend: str = "auto",
        device: str = "auto",
        precision: str = "auto",
        gallery: str | os.PathLike | Gallery | None = None,
        fpir: float | None = 0.01,
        far: str = "1e-3",
        min_enroll_resolution: float | None = MIN_ENROLL_RESOLUTION,
        fusion: str = "max",
        pairing: str = "auto",
        gallery_resolutions: Sequence[int] = DEFAULT_GALLERY_RESOLUTIONS,
        key: bytes | None = None,
        key_file: str | os.PathLike | None = None,
        key_env: str | None = None,
        estimate_resolution: bool | None = None,
        threads: int | None = None,
        batch_size: int = 32,
        matching: str = "plain",
        mitm_chains: int | None = 50,
        sr_models: Sequence[str | os.PathLike] | None = None,
        mitm_threshold: float | None = None,
        public_key: str | bytes | None = None,
        integrity_key_file: str | os.PathLike | None = None,
    ) -> None:
        if precision not in ("auto", "fp32", "int8"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'int8', got {precision!r}")
        if matching not in MATCHING:
            raise ValueError(f"matching must be one of {MATCHING}, got {matching!r}")
        if mitm_threshold is not None and (isinstance(mitm_threshold, bool) or not isinstance(
                mitm_threshold, (int, float)) or not math.isfinite(mitm_threshold)):
            raise ValueError(f"mitm_threshold must be None or a finite number, got {mitm_threshold!r}")
        if pairing not in PAIRINGS:
            raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
        if fusion not in ("max", "add"):
            raise ValueError(f"fusion must be 'max' (S_max) or 'add' (S_add), got {fusion!r}")
        self.fpir = None if fpir is None else parse_rate(fpir, "fpir")
        self.far_rate = parse_rate(far, "far")
        if min_enroll_resolution is not None and (isinstance(min_enroll_resolution, bool) or not isinstance(
                min_enroll_resolution, (int, float)) or not 0 <= min_enroll_resolution <= TEMPLATE_SIZE):
            raise ValueError(f"min_enroll_resolution must be None or a number in [0, {TEMPLATE_SIZE}], got "
                             f"{min_enroll_resolution!r}")
        self.min_enroll_resolution = None if min_enroll_resolution is None else float(min_enroll_resolution)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        levels = sorted({int(r) for r in gallery_resolutions})
        if any(not 1 <= r < TEMPLATE_SIZE for r in levels):
            raise ValueError(f"gallery_resolutions must lie in [1, {TEMPLATE_SIZE}), got {list(gallery_resolutions)}")
        self.bundle: ModelBundle = load_bundle(find_model_bundle(model), task="face-embedding", public_key=public_key)
        manifest = self.bundle.manifest
        if manifest.get("input", {}).get("size") not in (None, [TEMPLATE_SIZE, TEMPLATE_SIZE]):
            raise BundleError(f"model {self.bundle.name!r} takes {manifest['input']['size']} input; the SDK aligns "
                              f"faces to {TEMPLATE_SIZE}x{TEMPLATE_SIZE}")
        self.embedding_dim = int(manifest.get("embedding_dim", 0))
        if self.embedding_dim <= 0:
            raise BundleError(f"model {self.bundle.name!r}: manifest has no positive embedding_dim")
        self.model_key = ModelKey.from_bundle(self.bundle)
        self.matching = matching
        if matching == "mitm":
            # Meet-in-the-middle templates (many hypotheses per match size) never mix with plain ones: a separate
            # gallery binding makes using one with the other a clear GalleryModelMismatch.
            self.model_key = ModelKey(self.model_key.name + "+mitm", self.model_key.version, self.model_key.dim)
        self.normalization = self.bundle.normalization
        self.fusion = fusion
        self.pairing = pairing
        self.gallery_resolutions = tuple(levels)
        self.batch_size = batch_size
        self.threads = threads
        self.backend, self.precision, self.model_file, self._session = self._open(backend, device, precision)
        self.policy = ThresholdPolicy.from_manifest(dict(manifest), self.model_file)
        try:  # the manifest's own table at ``far`` when it lists that rate (kept for callers that read it)
            self.thresholds = Thresholds.from_manifest(dict(manifest), far, self.model_file)
        except BundleError:
            self.thresholds = None
        self.far = far

        if isinstance(detector, FaceDetector):
            self.detector = detector
        elif detector is None or isinstance(detector, dict):
            kwargs = {"backend": "auto" if self.backend == "tensorrt" else self.backend, "threads": threads,
                      "estimate_resolution": estimate_resolution, "public_key": public_key, **(detector or {})}
            self.detector = FaceDetector(**kwargs)
        else:
            raise TypeError(f"detector must be a FaceDetector, a dict of its arguments or None, got "
                            f"{type(detector).__name__}")
        # Effective resolution for caller-supplied faces: the detector's estimator, or our own when it has none.
        self.estimator: ResolutionEstimator | None = self.detector.estimator
        if self.estimator is None and estimate_resolution:
            self.estimator = ResolutionEstimator(threads=threads)

        if gallery is None or isinstance(gallery, Gallery):
            self.gallery = gallery
            if gallery is not None and gallery.model != self.model_key:
                from crres_sdk.gallery import GalleryModelMismatch
                raise GalleryModelMismatch(f"gallery {gallery.path} is bound to {gallery.model}, this recognizer "
                                           f"runs {self.model_key}")
        else:
            self.gallery = Gallery(gallery, self.model_key, key=key, key_file=key_file, key_env=key_env,
                                   integrity_key_file=integrity_key_file)
        self._write_lock = threading.Lock()
        self._mitm = None
        self.mitm_threshold = None if mitm_threshold is None else float(mitm_threshold)
        if matching == "mitm":
            from crres_sdk.mitm import MitmMatcher, OnnxSuperResolver, sample_chains  # the engine

            sr = OnnxSuperResolver.from_dir(*sr_models, backend=self.backend if self.backend != "tensorrt" else "auto",
                                            threads=threads) if sr_models else None
            chains = None if mitm_chains is None else (sample_chains(mitm_chains) if mitm_chains > 0 else [])
            self._mitm = MitmMatcher(self.embed_crops_uint8, sr=sr, chains=chains, batch_size=batch_size)
        #: The one matcher identify/match/VideoPipeline call (crres_sdk.matching).
        self.matcher: PlainMatcher | MitmMatcherAdapter = PlainMatcher(self) if self._mitm is None else \
            MitmMatcherAdapter(self, self._mitm)

    # ----------------------------------------------------------------------------------------------- set-up

    def _open(self, backend: str, device: str, precision: str) -> tuple[str, str, str, Session]:
        files = self.bundle.manifest["files"]
        if backend == "auto":
            candidates = auto_backends(device, files.get("tensorrt", {}).get("engine"))
        else:
            candidates = [resolve_backend(backend)]
        tried = []
        for name in candidates:
            choice = choose_model_file(files, name, precision)
            if choice is None:
                tried.append(f"{name}/{precision}")
                continue
            prec, runtime, role = choice
            if prec == "int8":
                _warn_if_accuracy_gate_not_run(self.bundle.manifest, f"{runtime}/{role}")
            dev = "cuda" if name == "tensorrt" else device
            path = self.bundle.file(runtime, role)
            return name, prec, f"{runtime}/{role}", open_model(path, name, self.threads, device=dev)
        raise BundleError(f"model {self.bundle.name!r} has no file for {', '.join(tried)} "
                          f"(bundle files: {', '.join(f'{t}/{r}' for t, rs in files.items() for r in rs)})")

    def __repr__(self) -> str:
        return (f"Recognizer(model={self.bundle.name!r} {self.bundle.version}, backend={self.backend!r}, "
                f"precision={self.precision!r}, file={self.model_file!r}, gallery="
                f"{str(self.gallery.path) if self.gallery is not None else None!r})")

    def close(self) -> None:
        if self.gallery is not None:
            self.gallery.close()

    def __enter__(self) -> "Recognizer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ the pipeline

    def detect(self, frame: np.ndarray) -> list[Face]:
        """Faces in a uint8 H x W x 3 BGR frame (box, score, landmarks, equivalent and effective resolution)."""
        return self.detector.detect(_check_frame(frame))

    def faces_from(self, frame: np.ndarray, faces: Any) -> list[Face]:
        """:class:`Face` records from caller-supplied faces: Face objects, (N, 4) boxes or (N, 5, 2) landmarks.

        A box is taken as the square the aligned 112 x 112 crop covers (landmarks are placed by the ArcFace
        template), so boxes from a tracker or a hand-drawn region work for faces too small to detect.
        """
        _check_frame(frame)
        if isinstance(faces, Face):
            faces = [faces]
        if isinstance(faces, (list, tuple)) and all(isinstance(f, Face) for f in faces):
            records = list(faces)
            if records:
                marks = np.stack([np.asarray(f.landmarks, np.float64).reshape(5, 2) for f in records])
                if not np.all(np.isfinite(marks)):
                    raise ValueError("faces contain NaN or infinite landmarks")
                check_face_geometry(frame.shape, marks)
        else:
            arr = np.asarray(faces, dtype=np.float64)
            if arr.ndim == 2 and arr.shape == (5, 2):
                arr = arr[None]
            if arr.size == 0:
                return []
            if arr.ndim == 1 and arr.shape[0] == 4:
                arr = arr[None]
            if arr.ndim == 3 and arr.shape[1:] == (5, 2):
                landmarks = arr
                boxes = np.concatenate([landmarks.min(1), landmarks.max(1)], axis=1)
            elif arr.ndim == 2 and arr.shape[1] == 4:
                boxes = arr
                if np.any(boxes[:, 2] <= boxes[:, 0]) or np.any(boxes[:, 3] <= boxes[:, 1]):
                    raise ValueError("boxes must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
                landmarks = landmarks_from_boxes(boxes)
            else:
                raise ValueError(f"faces must be Face records, (N, 4) boxes or (N, 5, 2) landmarks; got shape "
                                 f"{arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError("faces contain NaN or infinite coordinates")
            check_face_geometry(frame.shape, landmarks)
            records = [Face(box=b.astype(np.float32), score=1.0, landmarks=lm.astype(np.float32),
                            equivalent_resolution=float(equivalent_resolution(lm)))
                       for b, lm in zip(boxes, landmarks)]
        missing = [f for f in records if f.effective_resolution is None]
        if missing and self.estimator is not None:
            effective = self.estimator.estimate(frame, np.stack([f.landmarks for f in missing]))
            for face, e in zip(missing, effective):
                face.effective_resolution = float(e)
        return records

    def embed(self, frame: np.ndarray, faces: Any) -> np.ndarray:
        """(N, D) L2-normalised float32 embeddings of the faces (Face records, boxes or landmarks) in a frame."""
        records = self.faces_from(frame, faces)
        if not records:
            return np.zeros((0, self.embedding_dim), np.float32)
        crops = align_faces(frame, np.stack([f.landmarks for f in records]).astype(np.float64),
                            normalization=self.normalization)
        return self.embed_aligned(crops)

    def embed_aligned(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings of (N, 3, 112, 112) float32 crops already normalised per the model's manifest."""
        if not isinstance(crops, np.ndarray) or crops.dtype != np.float32 or crops.ndim != 4 \
                or crops.shape[1:] != (3, TEMPLATE_SIZE, TEMPLATE_SIZE):
            raise ValueError("crops must be a float32 (N, 3, 112, 112) array")
        out = np.empty((len(crops), self.embedding_dim), np.float32)
        name = self._session.input_names[0]
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start:start + self.batch_size]
            emb = self._session.run({name: np.ascontiguousarray(chunk)})[0]
            if emb.shape != (len(chunk), self.embedding_dim):
                raise BundleError(
                    f"model {self.bundle.name!r} returned {emb.shape} for a batch of {len(chunk)}, expected "
                    f"({len(chunk)}, {self.embedding_dim}); a model with a static batch of 1 needs batch_size=1")
            out[start:start + len(emb)] = emb
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        if not np.all(np.isfinite(out)) or np.any(norms == 0):
            raise RuntimeError(f"model {self.bundle.name!r} produced a non-finite or zero embedding")
        return out / norms

    def embed_crops_uint8(self, crops: np.ndarray, *, color: str = "bgr") -> np.ndarray:
        """Embeddings of (N, 112, 112, 3) uint8 aligned crops (e.g. ``align_faces_uint8`` output)."""
        crops = np.asarray(crops)
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (TEMPLATE_SIZE, TEMPLATE_SIZE, 3):
            raise ValueError("crops must be uint8 (N, 112, 112, 3)")
        if color not in ("bgr", "rgb"):
            raise ValueError(f"color must be 'bgr' or 'rgb', got {color!r}")
        norm = self.normalization
        x = crops[..., ::-1] if color != norm.color else crops
        batch = (x.astype(np.float32) - np.float32(norm.mean)) / np.float32(norm.std)
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        return self.embed_aligned(batch)

    @staticmethod
    def probe_resolution(face: Face) -> float:
        """What a face is matched at: the blind estimate when present (never above geometry), capped at 112
        (:func:`crres_sdk.policy.probe_resolution`)."""
        return face_resolution(face)

    def threshold_at(self, resolution: float | np.ndarray) -> np.ndarray | None:
        """The 1:1 (``verify``) threshold at ``resolution`` for the per-pair rate ``far``; None without thresholds."""
        return None if self.policy is None else self.policy.verify_threshold(resolution, self.far_rate)

    def identification_threshold(self, resolution: float) -> float | None:
        """The 1:N threshold a probe at ``resolution`` px would be decided at against the current gallery."""
        return self.matcher.threshold(float(resolution))[0] if isinstance(self.matcher, PlainMatcher) else \
            self.mitm_threshold

    def match(self, embeddings: np.ndarray, resolutions: Sequence[float] | np.ndarray, *,
              top_k: int = 1) -> list[MatchResult]:
        """A :class:`MatchResult` per (N, D) probe embedding at its resolution (plain matching; it also unpacks
        as the older ``(candidates, threshold, decision)``). Meet-in-the-middle needs crops: use ``identify``."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        return self.matcher.match_embeddings(embeddings, resolutions, top_k=top_k)

    def identify(self, frame: np.ndarray, faces: Any = None, *, top_k: int = 1) -> list[Face]:
        """Detect (or take ``faces``), embed and match every face; fills identity, match_score, decision and
        ``face.match`` (a :class:`MatchResult`).

        ``identity`` is set only when the best candidate's score exceeds the 1:N threshold for the face's
        resolution (decision ``"match"``); otherwise ``"unknown"``, ``"too-small"`` (below the lowest calibrated
        resolution: candidates ranked, no name) or ``"no-gallery"``. With ``matching="mitm"`` and no
        ``mitm_threshold`` the decision is ``"ranked"``. ``face.extra`` mirrors ``candidates``, ``threshold``
        and ``probe_resolution`` for older callers.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        records = self.detect(frame) if faces is None else self.faces_from(frame, faces)
        if not records:
            return []
        if isinstance(self.matcher, PlainMatcher):
            embeddings = self.embed(frame, records)
            results = self.matcher.match_faces(frame, records, top_k=top_k, embeddings=embeddings)
            for face, emb, res in zip(records, embeddings, results):
                res.apply(face, embedding=emb)
        else:
            for face, res in zip(records, self.matcher.match_faces(frame, records, top_k=top_k)):
                res.apply(face)
        return records

    def verify(self, image_a: Any, image_b: Any) -> Verification:
        """Same person? The largest face of each image; the threshold is taken at the lower resolution."""
        faces, embs = [], []
        for image in (image_a, image_b):
            frame = load_image(image)
            face = self._largest_face(frame, image)
            faces.append(face)
            embs.append(self.embed(frame, [face])[0])
        score = float(np.dot(embs[0], embs[1]))
        r = min(self.probe_resolution(f) for f in faces)
        t, same = self.matcher.verify(score, r)  # no decision below the lowest calibrated resolution
        return Verification(score, t, same, r, (faces[0], faces[1]))

    # ------------------------------------------------------------------------------------------ enrolment

    def enrollment_templates(self, frame: np.ndarray, face: Face) -> tuple[np.ndarray, np.ndarray]:
        """Templates of one enrolment face: the aligned crop at its own resolution and degraded to every gallery
        resolution below it (the same ``F_up(F_down,r)`` the models were trained with)."""
        crop = align_faces_uint8(frame, face.landmarks.astype(np.float64))
        if self._mitm is not None:  # Grm et al.: every degradation-chain hypothesis at every match size
            templates, sizes = self._mitm.gallery_templates(crop)
            return templates, sizes.astype(np.float64)
        own = self.probe_resolution(face)
        sizes = enrolment_levels(own, self.gallery_resolutions)
        crops = np.concatenate([crop[None], degrade(np.repeat(crop[None], len(sizes), 0), np.array(sizes))]) \
            if sizes else crop[None]
        return self.embed_crops_uint8(crops), np.array([own, *sizes], np.float64)

    def enroll(self, name: str, images: Any, *, faces: Sequence[Any] | None = None, metadata: dict | None = None,
               replace: bool = False) -> int:
        """Enrol ``name`` from one or more images (BGR arrays or file paths): the largest face of each (or
        ``faces[i]`` for image i), HR plus degraded templates, stored in one transaction. Returns the number of
        templates stored. Raises NoFaceError naming the image when one has no face (nothing is stored)."""
        if self.gallery is None:
            raise ValueError("this Recognizer has no gallery; pass gallery=PATH")
        if isinstance(images, (str, os.PathLike, np.ndarray)):
            images = [images]
        images = list(images)
        if not images:
            raise ValueError("enroll needs at least one image")
        if faces is not None and len(faces) != len(images):
            raise ValueError(f"faces must give one face per image ({len(images)}), got {len(faces)}")
        templates, resolutions, hashes = [], [], []
        for i, image in enumerate(images):
            frame = load_image(image)
            face = self._largest_face(frame, image) if faces is None else self.faces_from(frame, [faces[i]])[0]
            self._check_enrolment_size(face, image, i)
            t, r = self.enrollment_templates(frame, face)
            digest = photo_hash(frame)
            templates.append(t)
            resolutions.append(r)
            hashes.extend([digest] * len(r))
        with self._write_lock:
            return self.gallery.enroll(name, np.concatenate(templates), np.concatenate(resolutions),
                                       source_hashes=hashes, metadata=metadata, replace=replace)

    def _check_enrolment_size(self, face: Face, image: Any, index: int) -> None:
        r = self.probe_resolution(face)
        if self.min_enroll_resolution is not None and r < self.min_enroll_resolution:
            what = str(image) if isinstance(image, (str, os.PathLike)) else f"image {index} (array)"
            how = ("effective resolution, the blind estimate" if face.effective_resolution is not None
                   and face.effective_resolution < face.equivalent_resolution else "equivalent resolution")
            raise FaceTooSmallError(
                f"{what}: its face is {r:.1f} px ({how}), below the {self.min_enroll_resolution:g} px enrolment "
                "minimum; enrol a sharper or closer photo (or lower Recognizer(min_enroll_resolution=...)). "
                "Nothing was stored")

    def photos(self, name: str) -> list[PhotoInfo]:
        """The enrolment photos of ``name`` (source hash, templates, resolution, time)."""
        if self.gallery is None:
            raise ValueError("this Recognizer has no gallery; pass gallery=PATH")
        return self.gallery.photos(name)

    def remove_photo(self, name: str, photo: Any) -> int:
        """Remove one enrolment photo of ``name``: the image (path or array, hashed as at enrolment) or its
        source hash (a prefix of >= 8 hex characters). Returns the templates removed."""
        if self.gallery is None:
            raise ValueError("this Recognizer has no gallery; pass gallery=PATH")
        if isinstance(photo, str) and not Path(photo).exists() and len(photo) >= 8 and all(
                c in "0123456789abcdefABCDEF" for c in photo):
            key = photo
        else:
            key = photo_hash(load_image(photo))
        with self._write_lock:
            try:
                return self.gallery.remove_photo(name, key)
            except GalleryError as exc:
                if isinstance(photo, (str, os.PathLike)) and key != photo:
                    raise GalleryError(f"{photo}: {exc}") from None
                raise

    def _largest_face(self, frame: np.ndarray, source: Any) -> Face:
        found = self.detect(frame)
        if not found:
            what = source if isinstance(source, (str, os.PathLike)) else f"image of shape {frame.shape}"
            raise NoFaceError(f"no face found in {what}")
        return max(found, key=lambda f: f.width * f.height)


def photo_hash(frame: np.ndarray) -> str:
    """The source hash enrolment stores for a photo: sha256 of its decoded BGR pixels."""
    return hashlib.sha256(np.ascontiguousarray(frame).tobytes()).hexdigest()


#: A caller-supplied face is refused when less than this fraction of its aligned crop lies inside the frame: the
#: rest is zero padding, and a template of a mostly black crop matches any dark region.
MIN_CROP_INSIDE = 0.5
#: ... or when its crop is smaller than this (px), or larger than this many times the frame's longer side.
MIN_CROP_SIDE = 1.0
MAX_CROP_SCALE = 4.0


def crop_geometry(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For (N, 5, 2) landmarks: the side (px, in the image) of each face's aligned 112 crop and the image
    coordinates of a 9 x 9 grid over the crop (N, 81, 2), from the least-squares similarity to the template."""
    src = np.asarray(landmarks, np.float64)
    dst = ARCFACE_TEMPLATE.astype(np.float64)
    mu_s, mu_d = src.mean(1, keepdims=True), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var = (xs ** 2).sum((1, 2))
    # complex form of the 2-D similarity fit: dst - mu_d ~= z * (src - mu_s), z = s * exp(i theta)
    zs = xs[..., 0] + 1j * xs[..., 1]
    zd = xd[:, 0] + 1j * xd[:, 1]
    with np.errstate(all="ignore"):
        z = (np.conj(zs) * zd[None]).sum(1) / var
        side = TEMPLATE_SIZE / np.abs(z)  # image px per crop side
        g = (np.arange(9) + 0.5) / 9 * TEMPLATE_SIZE
        grid = (g[None, :] + 1j * g[:, None]).reshape(-1)  # crop coordinates
        pts = (grid[None] - (mu_d[0] + 1j * mu_d[1])) / z[:, None] + (mu_s[:, 0, 0] + 1j * mu_s[:, 0, 1])[:, None]
    return side, np.stack([pts.real, pts.imag], -1)


def check_face_geometry(frame_shape: tuple, landmarks: np.ndarray) -> None:
    """Raise FaceGeometryError for a face whose crop lies mostly outside the frame, or whose landmarks are
    degenerate or absurd (crop under 1 px or over 4x the frame)."""
    h, w = frame_shape[:2]
    side, pts = crop_geometry(landmarks)
    for i in range(len(side)):
        where = f"face {i} (landmarks spanning x {landmarks[i, :, 0].min():.4g}..{landmarks[i, :, 0].max():.4g}, " \
                f"y {landmarks[i, :, 1].min():.4g}..{landmarks[i, :, 1].max():.4g}) in a {w}x{h} frame"
        if not np.isfinite(side[i]) or side[i] < MIN_CROP_SIDE:
            raise FaceGeometryError(f"{where}: degenerate landmarks (an aligned crop of {side[i]:.3g} px); a face "
                                    f"needs a crop of at least {MIN_CROP_SIDE:g} px")
        if side[i] > MAX_CROP_SCALE * max(h, w):
            raise FaceGeometryError(f"{where}: its aligned crop would be {side[i]:.3g} px, over {MAX_CROP_SCALE:g}x "
                                    "the frame: not a face in this frame")
        inside = np.mean((pts[i, :, 0] >= 0) & (pts[i, :, 0] < w) & (pts[i, :, 1] >= 0) & (pts[i, :, 1] < h))
        if inside < MIN_CROP_INSIDE:
            raise FaceGeometryError(f"{where}: only {100 * inside:.0f}% of its aligned crop lies inside the frame "
                                    f"(at least {100 * MIN_CROP_INSIDE:.0f}% needed); the rest would be black "
                                    "padding, whose template matches any dark region")


def landmarks_from_boxes(boxes: np.ndarray) -> np.ndarray:
    """(N, 5, 2) landmarks that align each (N, 4) box's largest centred square onto the 112 x 112 template."""
    boxes = np.asarray(boxes, np.float64)
    side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    unit = ARCFACE_TEMPLATE / TEMPLATE_SIZE - 0.5  # template in [-0.5, 0.5] crop units
    return np.stack([cx, cy], 1)[:, None, :] + unit[None] * side[:, None, None]


def load_image(image: Any) -> np.ndarray:
    """A uint8 H x W x 3 BGR frame from an array (grey and BGRA converted) or an image file."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image file {path} does not exist")
        data = np.fromfile(path, np.uint8)
        size = image_size_from_header(data[:1 << 16].tobytes())
        if size is not None:  # before decoding: a 30000 x 30000 JPEG would take 2.7 GB to find out
            check_image_size(size[1], size[0], str(path))
        frame = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if frame is None:
            raise ValueError(f"{path} is not a readable image (corrupt or unsupported format)")
        return frame
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array or a file path, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.ndim in (2, 3):
        check_image_size(image.shape[0], image.shape[1])
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return _check_frame(image)


def _check_frame(frame: Any) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be a uint8 H x W x 3 BGR array, got {frame.dtype} {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame is empty ({frame.shape})")
    check_image_size(frame.shape[0], frame.shape[1], "frame")
    return frame


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size_from_header(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or BMP header without decoding; None for other formats or no header."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in _JPEG_SOF:
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return w, h
            i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


__all__ = ["DEFAULT_GALLERY_RESOLUTIONS", "FaceGeometryError", "FaceTooSmallError", "MatchResult", "NoFaceError", "Recognizer", "Thresholds", "Verification",
           "find_model_bundle", "landmarks_from_boxes", "load_image", "photo_hash"]
