"""Video: sources, an IoU tracker, per-track template accumulation and the recognition pipeline.

    from crres_sdk import Recognizer
    from crres_sdk.video import VideoPipeline

    rec = Recognizer(gallery="people.db")
    summary = VideoPipeline(rec).run("rtsp://camera/stream", events="events.jsonl", output_video="out.mp4")

How the modules fit: :mod:`~crres_sdk.video.sources` opens a camera, file, stream, GStreamer pipeline or frames
in memory (:func:`open_source`); :mod:`~crres_sdk.video.pipeline`'s :class:`VideoPipeline` takes each frame's
faces, gives them track ids with :mod:`~crres_sdk.video.tracking`'s :class:`IoUTracker` (greedy IoU on
velocity-predicted boxes), folds each track's embeddings into a resolution-weighted template
(:mod:`~crres_sdk.video.accumulation`, :class:`TrackTemplate`), matches single faces and track templates through
the recognizer's matcher, and writes the events below and an annotated video (:mod:`~crres_sdk.video.events`).
Everything public is imported here: use ``crres_sdk.video``.

Events (JSON lines, one object per line, ``"type"`` first):

* ``start``: source description, fps, frame count, model, gallery size, pipeline settings.
* ``face``: one per face per processed frame: ``frame``, ``time`` (s), ``track_id``, ``confirmed``, ``box``
  ``[x1, y1, x2, y2]``, ``detector_score``, ``equivalent_resolution``, ``effective_resolution``,
  ``probe_resolution``, the single-frame ``identity``/``score``/``threshold``/``decision`` and ``candidates``
  (``[[identity, score], ...]``), and ``track``: the accumulated template's ``identity``/``score``/
  ``threshold``/``decision``/``resolution``/``frames``/``candidates``.
* ``track``: when a track's accumulated decision or identity changes (including its first decision):
  ``frame``, ``time``, ``track_id``, ``identity``, ``score``, ``threshold``, ``decision``, ``resolution``,
  ``previous`` (the previous ``[decision, identity]`` or null).
* ``end``: the run's summary (the dict :meth:`VideoPipeline.run` returns).

Decisions are ``"match"`` (identity set), ``"unknown"``, ``"too-small"`` (below the lowest calibrated resolution:
no name), ``"no-gallery"`` or, for uncalibrated MITM, ``"ranked"``; ``score`` is the best candidate's fused
score (null without candidates), ``threshold`` the 1:N threshold at the resolution used (null when the model has
no thresholds); each face also carries its typed :class:`crres_sdk.matching.MatchResult` as ``face.match``.
"""

from crres_sdk.video.accumulation import TrackTemplate, resolution_weight
from crres_sdk.video.events import annotate, face_event
from crres_sdk.video.pipeline import VideoPipeline
from crres_sdk.video.sources import (
    FRAME_COUNT_SLACK,
    FRAME_COUNT_SLACK_FRACTION,
    FrameSource,
    VideoDecodeError,
    VideoSource,
    VideoSourceError,
    gstreamer_available,
    open_source,
)
from crres_sdk.video.tracking import IoUTracker, Track, iou_matrix

# annotate, face_event and the FRAME_COUNT_SLACK values stay importable from here (crres_sdk.serve uses annotate)
# without being part of the public list, as before.
__all__ = ["FrameSource", "IoUTracker", "Track", "TrackTemplate", "VideoDecodeError", "VideoPipeline", "VideoSource",
           "VideoSourceError", "gstreamer_available", "iou_matrix", "open_source", "resolution_weight"]
