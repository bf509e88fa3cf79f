"""The recognition pipeline, :class:`VideoPipeline`: per frame it detects (or takes the caller's faces),
tracks, embeds, accumulates and matches; over a whole source it writes events, the annotated video and progress.
Each processed frame a track's template is matched with :meth:`Recognizer.match` at its accumulated resolution
(gallery level and threshold), next to the face's own single-frame match. Matching goes through the recognizer's
one matcher (:mod:`crres_sdk.matching`): with ``Recognizer(matching="mitm")`` every face is matched
meet-in-the-middle from its crop, and a track's decision is the match of its highest-resolution face so far (an
averaged embedding has no crop to build MITM probes from)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from crres_sdk.face import Face
from crres_sdk.matching import MatchResult
from crres_sdk.video.accumulation import TrackTemplate
from crres_sdk.video.events import _open_writer, _round, annotate, face_event
from crres_sdk.video.sources import VideoDecodeError, VideoSource, open_source
from crres_sdk.video.tracking import IoUTracker


class _Progress:
    """tqdm when installed, else a stderr line at most once a second; nothing when disabled."""

    def __init__(self, enabled: bool, total: int | None, description: str) -> None:
        self.enabled, self.total, self.count = enabled, total, 0
        self._bar = None
        self._last = 0.0
        self._start = time.monotonic()
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, desc=description, unit="frame", file=sys.stderr)

    def update(self, faces: int) -> None:
        self.count += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(faces=faces, refresh=False)
            return
        now = time.monotonic()
        if now - self._last >= 1.0:
            self._last = now
            rate = self.count / max(now - self._start, 1e-9)
            total = f"/{self.total}" if self.total else ""
            print(f"\rframe {self.count}{total}  {rate:.1f} fps  faces {faces}   ", end="", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.count:
            print(file=sys.stderr)



def _as_result(x: Any, r: float) -> MatchResult:
    """A MatchResult from a matcher, or from a stand-in's legacy ``(candidates, threshold, decision)``."""
    if isinstance(x, MatchResult):
        return x
    cands, threshold, decision = x
    return MatchResult(list(cands), threshold, decision, float(r))


class VideoPipeline:
    """Detect (or take caller-supplied faces), track, embed, accumulate and match faces in a video.

    Args:
        recognizer: a :class:`crres_sdk.Recognizer` (its gallery decides identities; without one every
            decision is ``"no-gallery"``).
        tracker: an :class:`IoUTracker` (one with defaults when None); :meth:`run` resets it first.
        every_n: process every n-th frame; the frames in between are written to the output video with the
            last annotations and produce no events.
        min_face: faces whose box is narrower than this (px) are ignored (None = keep all the detector finds).
        top_k: candidates reported per face.
        accumulate: match each track's accumulated template (see :class:`TrackTemplate`); False = single frames.
        faces: where faces come from: None = ``recognizer.detect``; or a callable ``(frame_index, frame) ->``
            Face records, (N, 4) boxes or (N, 5, 2) landmarks, for an external detector (or, as the demo does,
            ground-truth boxes of faces too small to detect).
        matching: None = the recognizer's matcher; ``"plain"`` or ``"mitm"`` must agree with it (a
            ``Recognizer(matching="mitm")`` is needed for meet-in-the-middle: it has its own gallery).
    """

    def __init__(self, recognizer: Any, *, tracker: IoUTracker | None = None, every_n: int = 1,
                 min_face: float | None = None, top_k: int = 1, accumulate: bool = True,
                 faces: Callable[[int, np.ndarray], Any] | None = None, matching: str | None = None) -> None:
        for name in ("detect", "faces_from", "embed", "match", "probe_resolution"):
            if not callable(getattr(recognizer, name, None)):
                raise TypeError(f"recognizer must be a crres_sdk.Recognizer (no {name}()), got "
                                f"{type(recognizer).__name__}")
        if tracker is not None and not isinstance(tracker, IoUTracker):
            raise TypeError(f"tracker must be an IoUTracker, got {type(tracker).__name__}")
        if isinstance(every_n, bool) or not isinstance(every_n, int) or every_n < 1:
            raise ValueError(f"every_n must be an int >= 1, got {every_n!r}")
        if min_face is not None and not (isinstance(min_face, (int, float)) and min_face >= 0):
            raise ValueError(f"min_face must be a number >= 0 or None, got {min_face!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
        if faces is not None and not callable(faces):
            raise TypeError("faces must be a callable (frame_index, frame) -> faces, or None")
        kind = getattr(getattr(recognizer, "matcher", None), "kind", "plain")
        if matching is not None and matching not in ("plain", "mitm"):
            raise ValueError(f"matching must be None, 'plain' or 'mitm', got {matching!r}")
        if matching is not None and matching != kind:
            raise ValueError(f"VideoPipeline(matching={matching!r}) but the recognizer matches {kind!r}: build it "
                             f"with Recognizer(matching={matching!r}) (meet-in-the-middle keeps its own gallery)")
        self.matching = kind
        self.recognizer = recognizer
        self.tracker = tracker or IoUTracker()
        self.every_n = every_n
        self.min_face = min_face
        self.top_k = top_k
        self.accumulate = accumulate
        self.faces_fn = faces

    # -------------------------------------------------------------------------------------------- one frame

    def process(self, frame_index: int, timestamp: float, frame: np.ndarray) -> list[Face]:
        """Detect/track/embed/match one frame; returns its faces with ``track_id``, single-frame
        identity/score/decision and ``extra["track"]`` (the accumulated match)."""
        rec = self.recognizer
        if self.faces_fn is None:
            faces = rec.detect(frame)
        else:
            supplied = self.faces_fn(frame_index, frame)
            faces = [] if supplied is None else rec.faces_from(frame, supplied)
        if self.min_face is not None:
            faces = [f for f in faces if f.width >= self.min_face]
        tracks = self.tracker.update(np.array([f.box for f in faces], np.float64).reshape(-1, 4))
        if not faces:
            return []
        resolutions = np.array([rec.probe_resolution(f) for f in faces], np.float64)
        n = len(faces)
        if self.matching == "mitm":
            single = list(rec.matcher.match_faces(frame, faces, top_k=self.top_k))
            tracked = []
            for track, res, r in zip(tracks, single, resolutions):
                track.matched_frames += 1
                if track.best_match is None or r >= track.best_match.probe_resolution:
                    track.best_match = res  # the sharpest face so far decides the track
                best = track.best_match
                tracked.append((best, float(best.probe_resolution), track.matched_frames))
        else:
            embeddings = rec.embed(frame, faces)
            probe_emb, probe_res = [embeddings], [resolutions]
            if self.accumulate:
                for face, track, emb, r in zip(faces, tracks, embeddings, resolutions):
                    if track.template is None:
                        track.template = TrackTemplate(embeddings.shape[1])
                    track.template.add(emb, float(r))
                probe_emb.append(np.stack([t.template.template for t in tracks]))
                probe_res.append(np.array([t.template.resolution for t in tracks]))
            all_res = np.concatenate(probe_res)
            matcher = getattr(rec, "matcher", None)
            results = matcher.match_embeddings(np.concatenate(probe_emb), all_res, top_k=self.top_k) \
                if matcher is not None else rec.match(np.concatenate(probe_emb), all_res, top_k=self.top_k)
            results = [_as_result(x, r) for x, r in zip(results, all_res.tolist())]
            single = results[:n]
            tracked = [(results[n + i], float(tracks[i].template.resolution), tracks[i].template.count)
                       for i in range(n)] if self.accumulate else \
                [(res, float(r), 1) for res, r in zip(single, resolutions)]
        for face, track, res, (t_res, t_r, t_frames) in zip(faces, tracks, single, tracked):
            face.track_id = track.track_id
            res.apply(face, confirmed=track.confirmed, frame=frame_index, time=timestamp)
            face.extra["track"] = {
                "identity": t_res.identity,
                "score": t_res.score, "threshold": t_res.threshold, "decision": t_res.decision,
                "resolution": t_r, "frames": t_frames, "matcher": t_res.matcher,
                "candidates": [[c.identity, float(c.score)] for c in t_res.candidates]}
        return faces

    # ---------------------------------------------------------------------------------------------- the run

    def run(self, source: Any, *, events: str | os.PathLike | None = None,
            output_video: str | os.PathLike | None = None, max_frames: int | None = None,
            progress: bool = True, fps: float | None = None,
            on_event: Callable[[dict], None] | None = None) -> dict:
        """Run over a source (anything :func:`open_source` takes). Writes JSON-lines ``events`` and an annotated
        ``output_video`` (mp4v) when given; returns a summary dict (also the ``end`` event).

        ``max_frames`` stops after that many frames read; ``fps`` overrides the source's frame rate for the
        output video (default: the source's, else 25); ``on_event`` is called with every event dict as it
        happens (with or without an events file), e.g. to print track decisions live.
        """
        if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                       or max_frames < 1):
            raise ValueError(f"max_frames must be an int >= 1 or None, got {max_frames!r}")
        if on_event is not None and not callable(on_event):
            raise TypeError("on_event must be a callable taking an event dict")
        self.tracker.reset()
        owned = not isinstance(source, VideoSource)
        src = open_source(source)
        writer = None
        log = None

        def emit(record: dict) -> None:
            if log is not None:
                log.write(json.dumps(record, separators=(",", ":")) + "\n")
                log.flush()
            if on_event is not None:
                on_event(record)

        total = src.frame_count if max_frames is None else min(src.frame_count or max_frames, max_frames)
        bar = _Progress(progress, total, "crres")
        rec = self.recognizer
        tracks_summary: dict[int, dict] = {}
        frames_read = frames_processed = n_faces = 0
        last_faces: list[Face] = []
        start = time.monotonic()
        try:
            if events is not None:
                Path(events).parent.mkdir(parents=True, exist_ok=True)
                log = open(events, "w", encoding="utf-8")
            gallery = getattr(rec, "gallery", None)
            bundle = getattr(rec, "bundle", None)
            emit({"type": "start", **src.info(),
                  "model": None if bundle is None else f"{bundle.name} {bundle.version}",
                  "gallery_identities": None if gallery is None else len(gallery),
                  "every_n": self.every_n, "accumulate": self.accumulate, "matching": self.matching,
                  "fpir": getattr(rec, "fpir", None),
                  "faces": "detector" if self.faces_fn is None else "caller"})
            frames = iter(src)
            decode_error: VideoDecodeError | None = None
            while True:
                try:
                    index, timestamp, frame = next(frames)
                except StopIteration:
                    break
                except VideoDecodeError as exc:  # finish the summary and outputs, then report it
                    decode_error = exc
                    break
                if max_frames is not None and frames_read >= max_frames:
                    break
                frames_read += 1
                if index % self.every_n == 0:
                    last_faces = self.process(index, timestamp, frame)
                    frames_processed += 1
                    n_faces += len(last_faces)
                    for face in last_faces:
                        self._record(face, index, timestamp, tracks_summary, emit)
                if output_video is not None:
                    if writer is None:
                        writer = _open_writer(output_video, fps or src.fps or 25.0, frame.shape)
                    writer.write(annotate(frame, last_faces))
                bar.update(len(last_faces))
            elapsed = time.monotonic() - start
            summary = {
                **src.info(),
                "frames_read": frames_read,
                "frames_processed": frames_processed,
                "faces": n_faces,
                "elapsed_s": round(elapsed, 3),
                "processed_fps": round(frames_processed / elapsed, 2) if elapsed > 0 else None,
                "tracks": [tracks_summary[k] for k in sorted(tracks_summary)],
                "events": None if events is None else str(events),
                "output_video": None if output_video is None or writer is None else str(output_video),
            }
            if decode_error is not None:
                summary["error"] = str(decode_error)
                emit({"type": "error", "message": str(decode_error), "frame": frames_read})
            emit({"type": "end", **summary})
            if decode_error is not None:
                decode_error.summary = summary
                raise decode_error
        finally:
            bar.close()
            if writer is not None:
                writer.release()
            if log is not None:
                log.close()
            if owned:
                src.close()
        return summary

    def _record(self, face: Face, index: int, timestamp: float, tracks: dict,
                emit: Callable[[dict], None]) -> None:
        track = face.extra["track"]
        summary = tracks.setdefault(face.track_id, {
            "track_id": face.track_id, "first_frame": index, "last_frame": index, "faces": 0,
            "max_probe_resolution": 0.0, "min_probe_resolution": float("inf"), "decision": None, "identity": None,
            "score": None, "changes": 0})
        previous = None if summary["decision"] is None else [summary["decision"], summary["identity"]]
        changed = previous != [track["decision"], track["identity"]]
        r = face.extra["probe_resolution"]
        summary.update(last_frame=index, faces=summary["faces"] + 1,
                       max_probe_resolution=max(summary["max_probe_resolution"], r),
                       min_probe_resolution=min(summary["min_probe_resolution"], r),
                       decision=track["decision"], identity=track["identity"], score=track["score"],
                       changes=summary["changes"] + int(changed))
        emit(face_event(face, index, timestamp))
        if changed:
            emit({"type": "track", "frame": index, "time": round(timestamp, 4), "track_id": face.track_id,
                  "identity": track["identity"], "score": _round(track["score"]),
                  "threshold": _round(track["threshold"]), "decision": track["decision"],
                  "resolution": _round(track["resolution"]), "previous": previous})
