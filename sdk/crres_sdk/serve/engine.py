"""The shared recognizer: one thread takes the newest frame of every camera that is due, detects faces in each,
tracks them per camera (the SDK's :class:`IoUTracker`), embeds the faces of all those frames in one batch
(:meth:`Recognizer.embed_aligned`), accumulates each track's template weighted by resolution (the SDK's
:class:`TrackTemplate`, as :class:`VideoPipeline` does) and matches every track in one call
(:meth:`Recognizer.match`: the manifest's threshold at the track's probe resolution).

Events, one stream per face track: ``start`` once a track has ``min_track_frames`` frames or is named, ``update`` when its
decision or identity changes, ``end`` when it has not been seen for ``track_timeout_s``. Tracks that end unknown
join an unknown group (a person seen several times appears once: a track joins the group whose template it
matches at the manifest's threshold for its resolution), kept with the track's best face regions for labelling.
A new track named like an open track of the same camera that was not seen in that frame continues it (the IoU
tracker loses fast faces at low processing rates): one person passing gives one ``start``.

Work per frame is cut where it changes nothing: the motion gate (:mod:`crres_sdk.serve.motion`) runs MTCNN only on
the parts of a frame that changed since the detector last looked there, keeping the faces elsewhere, with a
whole-frame detection at least every ``full_detect_every_s``; and a track already named with a confident score
(``reidentify_margin`` of the way from its threshold to 1) is embedded again only every ``reidentify_every``
frames or when its face grew by ``reidentify_growth`` (unknown and unsure tracks are embedded every frame), so its
decision, events and template are those of the frames that were embedded.
"""

from __future__ import annotations

import base64
import collections
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np

from crres_sdk.face import Face
from crres_sdk.preprocess import align_faces, align_faces_uint8, equivalent_resolution
from crres_sdk.serve.cameras import CameraReader
from crres_sdk.serve.config import ServeConfig
from crres_sdk.serve.motion import MotionGate
from crres_sdk.video import IoUTracker, TrackTemplate, annotate

log = logging.getLogger("crres.serve.engine")

BEST_REGIONS = 3          # face regions kept per track / unknown group (the highest-resolution ones)
REGION_MARGIN = 0.6       # a kept region is the face box grown by this fraction on each side


def _near(a: list | None, b: list | None) -> bool:
    """Boxes close enough to be one face's track broken between two processed frames: centres within twice the
    larger width, widths within a factor 2."""
    if a is None or b is None:
        return False
    wa, wb = a[2] - a[0], b[2] - b[0]
    if min(wa, wb) <= 0 or max(wa, wb) > 2 * min(wa, wb):
        return False
    dx = (a[0] + a[2] - b[0] - b[2]) / 2
    dy = (a[1] + a[3] - b[1] - b[3]) / 2
    return (dx * dx + dy * dy) ** 0.5 <= 2 * max(wa, wb)


def _touches(box: Any, region: tuple) -> bool:
    return box[0] < region[2] and region[0] < box[2] and box[1] < region[3] and region[1] < box[3]


def _by_frame(todo: list) -> list:
    """[(frame, [(face, r), ...]), ...]: the faces to embed grouped by their frame, in order."""
    out: list = []
    for frame, face, r in todo:
        if out and out[-1][0] is frame:
            out[-1][1].append((face, r))
        else:
            out.append((frame, [(face, r)]))
    return out


def _r(v: Any, digits: int = 4) -> Any:
    return None if v is None else round(float(v), digits)


@dataclass
class TrackState:
    camera: str
    track_id: int
    uid: str
    first_seen: float
    last_seen: float
    template: TrackTemplate
    frames: int = 0
    decision: str | None = None
    identity: str | None = None
    score: float | None = None
    threshold: float | None = None
    resolution: float = 0.0
    max_resolution: float = 0.0
    started: bool = False
    box: list | None = None
    candidates: list = field(default_factory=list)
    regions: list = field(default_factory=list)   # [(resolution, region BGR, landmarks in region)]
    embedded_resolution: float = 0.0   # probe resolution of the face last embedded
    since_embedded: int = 0            # frames seen since the last embedding


@dataclass
class UnknownGroup:
    id: str
    template: np.ndarray
    resolution: float
    cameras: set
    tracks: int
    first_seen: float
    last_seen: float
    regions: list   # [(resolution, region, landmarks)], best first


@dataclass
class CameraRuntime:
    reader: CameraReader
    tracker: IoUTracker
    last_seq: int = 0
    next_due: float = 0.0
    processed: int = 0
    faces: int = 0
    proc_times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=64))
    last_frame: Any = None        # the Frame last processed
    last_faces: list = field(default_factory=list)
    jpeg: tuple | None = None     # (seq, bytes) cache of the annotated live view
    tracks: dict = field(default_factory=dict)
    gate: MotionGate | None = None
    detections: list = field(default_factory=list)   # the last detector output (Face records, whole frame)


class Engine:
    """See the module docstring. ``publish(event)`` is called for every event (MQTT); it must not block long."""

    def __init__(self, recognizer: Any, cameras: dict[str, CameraReader], config: ServeConfig, *,
                 publish: Callable[[dict], None] | None = None) -> None:
        self.rec = recognizer
        self.cfg = config
        self.rcfg = config.recognition
        self.publish = publish
        self.cams = {name: CameraRuntime(reader, IoUTracker(min_hits=1)) for name, reader in cameras.items()}
        # the motion gate needs the detector's raw stage (detect_arrays) to detect crops of a frame
        self.detector = getattr(recognizer, "detector", None)
        if self.rcfg.motion_gate and hasattr(self.detector, "detect_arrays"):
            for cam in self.cams.values():
                cam.gate = MotionGate(self.rcfg.motion_threshold, self.rcfg.motion_max_area,
                                      self.rcfg.full_detect_every_s)
        self.events: collections.deque = collections.deque(maxlen=config.events.keep)
        self.event_seq = 0
        self.unknown: collections.OrderedDict[str, UnknownGroup] = collections.OrderedDict()
        self.lock = threading.RLock()
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(self.rcfg.detect_workers, thread_name_prefix="detect") \
            if self.rcfg.detect_workers > 1 else None
        self.counters = collections.Counter()
        self.batch_sizes: collections.deque = collections.deque(maxlen=256)
        self.last_error: str | None = None
        self.started = time.time()

    @property
    def thumbnails(self) -> bool:
        g = self.rec.gallery
        return bool(g is not None and getattr(g, "stores_thumbnails", False))

    # ------------------------------------------------------------------------------------------------ life

    def start(self) -> "Engine":
        self._thread = threading.Thread(target=self._run, name="crres-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        with self.lock:  # open tracks end with the service
            for cam in self.cams.values():
                for tid in list(cam.tracks):
                    self._end_track(cam, tid)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.step():
                    self._stop.wait(0.005)
            except Exception as exc:  # keep serving: one bad frame must not stop every camera
                self.counters["errors"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("engine step failed")
                self._stop.wait(0.1)

    # ------------------------------------------------------------------------------------------------ a step

    def step(self) -> bool:
        """Process the newest frame of every camera that is due; False when none was."""
        now = time.monotonic()
        due = []
        for name, cam in self.cams.items():
            if now < cam.next_due:
                continue
            frame = cam.reader.latest(cam.last_seq)
            if frame is None:
                continue
            cam.last_seq = frame.seq
            cam.next_due = max(cam.next_due + 1.0 / cam.reader.config.max_fps, now) \
                if cam.next_due else now + 1.0 / cam.reader.config.max_fps
            due.append((name, cam, frame))
        if not due:
            self._expire(time.time())
            return False
        t0 = time.monotonic()
        wall = time.time()
        plans = []
        for name, cam, frame in due:  # the motion gate: which parts of each frame the detector must see
            if cam.gate is None:
                plans.append((None, None))
            else:
                plans.append(cam.gate.plan(frame.image, wall, [f.box for f in cam.detections]))
        jobs = [(cam, frame, regions) for (_, cam, frame), (regions, _) in zip(due, plans)]
        if self._pool is not None and sum(r is None or len(r) > 0 for _, _, r in jobs) > 1:
            detected = list(self._pool.map(self._detect, jobs))
        else:
            detected = [self._detect(job) for job in jobs]
        per_cam: list[tuple[str, CameraRuntime, Any, list[Face], list]] = []
        todo: list[tuple[Any, Face, float]] = []   # (frame, face, probe resolution) to embed
        all_faces: list[Face] = []
        for (name, cam, frame), (regions, small), faces in zip(due, plans, detected):
            if cam.gate is not None:
                cam.gate.commit(small, regions, wall)
                cam.detections = faces
                self.counters["detect_full" if regions is None else "detect_regions" if regions
                              else "detect_skipped"] += 1
            faces = [self._copy(f) for f in faces]  # the engine annotates its own records
            min_face = cam.reader.config.min_face if cam.reader.config.min_face is not None else self.rcfg.min_face
            faces = [f for f in faces if f.width >= min_face]
            tracks = cam.tracker.update(np.array([f.box for f in faces], np.float64).reshape(-1, 4))
            for face, track in zip(faces, tracks):
                face.track_id = track.track_id
                r = self.rec.probe_resolution(face)
                face.extra["probe_resolution"] = r
                if self._needs_embedding(cam.tracks.get(track.track_id), r):
                    todo.append((frame, face, r))
            per_cam.append((name, cam, frame, faces, tracks))
            all_faces.extend(faces)
        embedded: dict[int, int] = {}   # id(face) -> row of the embedding batch
        if todo:
            batches, rows = [], []
            for frame, group in _by_frame(todo):
                batches.append(align_faces(frame.image, np.stack([f.landmarks for f, _ in group]).astype(np.float64),
                                           normalization=self.rec.normalization))
                rows.extend(f for f, _ in group)
            embeddings = self.rec.embed_aligned(np.concatenate(batches))  # one batch for every camera's faces
            embedded = {id(f): i for i, f in enumerate(rows)}
            self.batch_sizes.append(len(rows))
        self.counters["embeddings_skipped"] += len(all_faces) - len(embedded)
        states: list[TrackState] = []
        with self.lock:
            for name, cam, frame, faces, tracks in per_cam:
                for face in faces:
                    r = face.extra["probe_resolution"]
                    st = cam.tracks.get(face.track_id)
                    if st is None:
                        st = cam.tracks[face.track_id] = TrackState(
                            name, face.track_id, uuid.uuid4().hex[:12], frame.captured, frame.captured,
                            TrackTemplate(self.rec.embedding_dim if hasattr(self.rec, "embedding_dim")
                                          else embeddings.shape[1]))
                    row = embedded.get(id(face))
                    if row is not None:
                        st.template.add(embeddings[row], r)
                        st.embedded_resolution, st.since_embedded = r, 0
                        states.append(st)
                    else:
                        st.since_embedded += 1
                    st.frames += 1
                    st.last_seen = frame.captured
                    st.max_resolution = max(st.max_resolution, r)
                    st.box = [round(float(v), 1) for v in face.box]
                    self._keep_region(st, frame.image, face, r)
        matches: list = []
        if states:
            matches = self.rec.match(np.stack([s.template.template for s in states]),
                                     np.array([s.template.resolution for s in states]), top_k=3)
        embed_done = time.time()
        k = 0
        with self.lock:
            for name, cam, frame, faces, tracks in per_cam:
                for face in faces:
                    st = cam.tracks[face.track_id]
                    if id(face) not in embedded:  # a confidently named track between re-identifications
                        face.identity, face.decision, face.match_score = st.identity, st.decision, st.score
                        face.extra["track"] = {"identity": st.identity, "decision": st.decision, "score": st.score}
                        continue
                    cands, threshold, decision = matches[k]
                    k += 1
                    identity = cands[0].identity if decision == "match" else None
                    if not st.started and identity is not None:
                        st = self._continue_track(cam, face.track_id, st, identity, frame.captured)
                    changed = st.started and (decision, identity) != (st.decision, st.identity)
                    st.decision, st.identity, st.threshold = decision, identity, threshold
                    st.score = float(cands[0].score) if cands else None
                    st.resolution = float(st.template.resolution)
                    st.candidates = [[c.identity, round(float(c.score), 4)] for c in cands]
                    face.identity, face.decision, face.match_score = identity, decision, st.score
                    face.extra["track"] = {"identity": identity, "decision": decision, "score": st.score}
                    # a named face is reported at once; an unknown one after min_track_frames (a false detection
                    # rarely lasts): at low processing rates a moving face's track may not survive two frames
                    if not st.started and (st.frames >= self.rcfg.min_track_frames or decision == "match"):
                        st.started = True
                        self._emit(self._event("start", st, frame.captured, embed_done, face))
                    elif changed:
                        self._emit(self._event("update", st, frame.captured, embed_done, face))
                cam.last_frame, cam.last_faces = frame, faces
                cam.processed += 1
                cam.faces += len(faces)
                cam.proc_times.append(time.monotonic())
            self.counters["frames"] += len(due)
            self.counters["faces"] += len(all_faces)
        self.counters["busy_s"] += time.monotonic() - t0
        with self.cond:
            self.cond.notify_all()
        self._expire(time.time())
        return True

    def _needs_embedding(self, st: "TrackState | None", r: float) -> bool:
        """Embed this frame's face of the track ``st`` (None: a new track)? Always, unless the track is named with
        a confident score (at least ``reidentify_margin`` of the way from its threshold to 1: scores and thresholds
        are the model's, e.g. 0.99 against 0.945), was embedded fewer than ``reidentify_every`` frames ago and its
        face has not grown by ``reidentify_growth`` since."""
        rc = self.rcfg
        if st is None or rc.reidentify_every <= 1 or not st.started or st.decision != "match":
            return True
        if st.score is None or st.threshold is None \
                or st.score < st.threshold + rc.reidentify_margin * (1.0 - st.threshold):
            return True
        if st.since_embedded + 1 >= rc.reidentify_every:
            return True
        return r > st.embedded_resolution * rc.reidentify_growth

    def _detect(self, job: tuple) -> list[Face]:
        """The faces of one camera's frame: the whole frame (regions None), none changed (the last detections), or
        the changed regions detected as crops plus the last detections that touch none of them."""
        cam, frame, regions = job
        if regions is None:
            return self.rec.detect(frame.image)
        if not regions:
            return list(cam.detections)
        image = frame.image
        kept = [f for f in cam.detections if not any(_touches(f.box, r) for r in regions)]
        boxes, scores, marks = [], [], []
        for x1, y1, x2, y2 in regions:
            found = self.detector.detect_arrays(np.ascontiguousarray(image[y1:y2, x1:x2]))
            if len(found.scores):
                boxes.append(found.boxes + np.array([x1, y1, x1, y1], np.float32))
                scores.append(found.scores)
                marks.append(found.landmarks + np.array([x1, y1], np.float32))
        if not boxes:
            return kept
        boxes, scores, marks = np.concatenate(boxes), np.concatenate(scores), np.concatenate(marks)
        resolution = equivalent_resolution(marks)
        estimator = getattr(self.detector, "estimator", None)
        effective = estimator.estimate(image, marks) if estimator is not None else [None] * len(scores)
        new = [Face(box=b, score=float(s), landmarks=lm, equivalent_resolution=float(r),
                    effective_resolution=None if e is None else float(e))
               for b, s, lm, r, e in zip(boxes, scores, marks, resolution, effective)]
        return sorted(new + kept, key=lambda f: -f.score)

    @staticmethod
    def _copy(face: Face) -> Face:
        return Face(box=face.box, score=face.score, landmarks=face.landmarks,
                    equivalent_resolution=face.equivalent_resolution, effective_resolution=face.effective_resolution)

    def _continue_track(self, cam: CameraRuntime, tid: int, st: TrackState, identity: str,
                        captured: float) -> TrackState:
        """A new track named ``identity`` while an open track of the same camera, named the same and not seen in
        this frame, near where that track was last seen and of a similar size (:func:`_near`), is the same person
        whose IoU track broke (a fast-moving face at a low processing rate): it continues that track (same
        ``track`` uid, no second ``start``) instead of starting another."""
        for old_id, old in list(cam.tracks.items()):
            if old_id == tid or not old.started or old.identity != identity or old.last_seen >= captured:
                continue
            if not _near(old.box, st.box):  # somewhere else, or another size: a new appearance
                continue
            old.template.add(st.template.template, float(st.template.resolution))
            old.frames += st.frames
            old.last_seen = st.last_seen
            old.max_resolution = max(old.max_resolution, st.max_resolution)
            old.box = st.box
            old.regions = sorted(old.regions + st.regions, key=lambda t: -t[0])[:BEST_REGIONS]
            old.track_id = tid
            del cam.tracks[old_id]
            cam.tracks[tid] = old
            self.counters["tracks_continued"] += 1
            return old
        return st

    def _keep_region(self, st: TrackState, image: np.ndarray, face: Face, r: float) -> None:
        if len(st.regions) >= BEST_REGIONS and r <= st.regions[-1][0]:
            return
        x1, y1, x2, y2 = (float(v) for v in face.box)
        mx, my = (x2 - x1) * REGION_MARGIN, (y2 - y1) * REGION_MARGIN
        h, w = image.shape[:2]
        a, b = int(max(0, x1 - mx)), int(max(0, y1 - my))
        c, d = int(min(w, x2 + mx + 1)), int(min(h, y2 + my + 1))
        if c - a < 2 or d - b < 2:
            return
        region = image[b:d, a:c].copy()
        marks = np.asarray(face.landmarks, np.float64) - [a, b]
        st.regions.append((r, region, marks))
        st.regions.sort(key=lambda t: -t[0])
        del st.regions[BEST_REGIONS:]

    def _expire(self, now: float) -> None:
        with self.lock:
            for cam in self.cams.values():
                for tid in [t for t, s in cam.tracks.items() if now - s.last_seen > self.rcfg.track_timeout_s]:
                    self._end_track(cam, tid)

    def _end_track(self, cam: CameraRuntime, tid: int) -> None:
        st = cam.tracks.pop(tid)
        if not st.started:
            return
        self._emit(self._event("end", st, st.last_seen, time.time(), None))
        if st.decision != "match" and self.cfg.events.unknown_groups > 0 and st.regions:
            self._group_unknown(st)

    def _group_unknown(self, st: TrackState) -> None:
        template, res = st.template.template, float(st.template.resolution)
        best, best_score = None, -1.0
        for g in self.unknown.values():
            score = float(np.dot(template, g.template))
            t = self.rec.threshold_at(min(res, g.resolution))
            limit = float(t) if t is not None else 0.5
            if score > limit and score > best_score:
                best, best_score = g, score
        if best is None:
            gid = uuid.uuid4().hex[:10]
            self.unknown[gid] = UnknownGroup(gid, template, res, {st.camera}, 1, st.first_seen, st.last_seen,
                                             list(st.regions))
            while len(self.unknown) > self.cfg.events.unknown_groups:
                self.unknown.popitem(last=False)
            return
        w_old, w_new = best.tracks, 1
        merged = best.template * w_old + template * w_new
        best.template = merged / max(np.linalg.norm(merged), 1e-12)
        best.resolution = max(best.resolution, res)
        best.cameras.add(st.camera)
        best.tracks += 1
        best.last_seen = max(best.last_seen, st.last_seen)
        best.regions = sorted(best.regions + list(st.regions), key=lambda t: -t[0])[:BEST_REGIONS]
        self.unknown.move_to_end(best.id)

    # ------------------------------------------------------------------------------------------------ events

    def _event(self, kind: str, st: TrackState, captured: float, processed: float, face: Face | None) -> dict:
        self.event_seq += 1
        ev = {
            "id": self.event_seq, "event": kind, "camera": st.camera, "track_id": st.track_id, "track": st.uid,
            "identity": st.identity, "label": st.identity or "unknown", "decision": st.decision,
            "score": _r(st.score), "threshold": _r(st.threshold), "probe_resolution": _r(st.resolution, 2),
            "max_resolution": _r(st.max_resolution, 2), "frames": st.frames, "candidates": st.candidates,
            "first_seen": round(st.first_seen, 4), "last_seen": round(st.last_seen, 4),
            "captured_at": round(captured, 4), "processed_at": round(processed, 4), "box": st.box,
        }
        if self.thumbnails and st.regions:
            r, region, marks = st.regions[0]
            crop = align_faces_uint8(region, marks[None])[0]
            ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
            if ok:
                ev["snapshot"] = base64.b64encode(buf.tobytes()).decode("ascii")
        return ev

    def _emit(self, ev: dict) -> None:
        self.events.append(ev)
        self.counters[f"events_{ev['event']}"] += 1
        if self.publish is not None:
            try:
                self.publish(ev)
            except Exception:
                log.exception("publishing event %s failed", ev["id"])

    def recent_events(self, after: int = 0, limit: int = 100, with_snapshots: bool = False) -> list[dict]:
        with self.lock:
            out = [e for e in self.events if e["id"] > after][-limit:]
        if not with_snapshots:
            out = [{k: v for k, v in e.items() if k != "snapshot"} for e in out]
        return out

    # ------------------------------------------------------------------------------------------------ views

    def live_jpeg(self, name: str) -> bytes | None:
        """The camera's last processed frame with boxes, names and resolution drawn (JPEG), cached per frame."""
        cam = self.cams[name]
        with self.lock:
            frame, faces, cached = cam.last_frame, list(cam.last_faces), cam.jpeg
        if frame is None:
            latest = cam.reader.latest()
            if latest is None:
                return None
            frame, faces = latest, []
        if cached is not None and cached[0] == frame.seq:
            return cached[1]
        ok, buf = cv2.imencode(".jpg", annotate(frame.image, faces), [cv2.IMWRITE_JPEG_QUALITY, 80])
        data = buf.tobytes() if ok else None
        with self.lock:
            cam.jpeg = (frame.seq, data)
        return data

    def camera_status(self) -> list[dict]:
        out = []
        now = time.monotonic()
        with self.lock:
            for name, cam in self.cams.items():
                times = [t for t in cam.proc_times if now - t <= 5.0]
                fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
                out.append({**cam.reader.status(), "processed_frames": cam.processed, "faces": cam.faces,
                            "processed_fps": round(fps, 2), "open_tracks": len(cam.tracks),
                            "live_faces": [{"track_id": f.track_id, "label": f.identity or f.decision,
                                            "score": _r(f.match_score),
                                            "probe_resolution": _r(f.extra.get("probe_resolution"), 1),
                                            "box": [round(float(v), 1) for v in f.box]} for f in cam.last_faces]})
        return out

    def unknown_groups(self) -> list[dict]:
        with self.lock:
            return [{"id": g.id, "cameras": sorted(g.cameras), "tracks": g.tracks, "first_seen": g.first_seen,
                     "last_seen": g.last_seen, "resolution": round(g.resolution, 1), "crops": len(g.regions)}
                    for g in reversed(self.unknown.values())]

    def unknown_crop(self, gid: str, index: int) -> bytes | None:
        with self.lock:
            g = self.unknown.get(gid)
            if g is None or not 0 <= index < len(g.regions):
                return None
            _, region, marks = g.regions[index]
        crop = align_faces_uint8(region, marks[None])[0]
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
        return buf.tobytes() if ok else None

    def take_unknown(self, gid: str) -> UnknownGroup | None:
        with self.lock:
            return self.unknown.get(gid)

    def drop_unknown(self, gid: str) -> bool:
        with self.lock:
            return self.unknown.pop(gid, None) is not None
