"""Recognise enrolled people in a camera or video stream.

    python examples/cctv_stream.py --source 0 --gallery people.db                    # USB camera 0
    python examples/cctv_stream.py --source clip.mp4 --gallery people.db --out annotated.mp4
    python examples/cctv_stream.py --source "rtsp://user:pass@10.0.0.5/stream1" --gallery people.db --every-n 2
    python examples/cctv_stream.py --gallery people.db --source \\
        "nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! video/x-raw,format=BGRx ! \\
         videoconvert ! video/x-raw,format=BGR ! appsink"                              # Jetson CSI camera

Enrol people first, e.g. ``Recognizer(gallery="people.db").enroll("alice", ["alice.jpg"])``. Every face gets a
track id; each track's resolution-weighted template is matched at its resolution, and each change of a track's
decision is printed. Events go to ``--events`` as JSON lines (see ``crres_sdk.video``). Stop with Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from crres_sdk import Recognizer
from crres_sdk.video import VideoPipeline


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", required=True, help="camera index, video file, rtsp/http URL or GStreamer pipeline")
    p.add_argument("--gallery", required=True, type=Path, help="gallery database (made with Recognizer.enroll)")
    p.add_argument("--model", default="default", help="embedding model bundle (default: the shipped one)")
    p.add_argument("--batch-size", type=int, default=32, help="faces per inference call")
    p.add_argument("--events", type=Path, default=Path("events.jsonl"), help="JSON-lines event log")
    p.add_argument("--out", type=Path, default=None, help="annotated output video (.mp4)")
    p.add_argument("--every-n", type=int, default=1, help="process every n-th frame")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    args = p.parse_args()
    if not args.gallery.is_file():
        p.error(f"gallery {args.gallery} does not exist; enrol people first")

    with Recognizer(args.model, gallery=args.gallery, batch_size=args.batch_size) as rec:
        print(f"{rec}: {len(rec.gallery)} identities", file=sys.stderr)
        pipeline = VideoPipeline(rec, every_n=args.every_n)

        def show(event: dict) -> None:  # a track's accumulated decision changed
            if event["type"] == "track":
                score = "" if event["score"] is None else f" score {event['score']:.2f}"
                print(f"t={event['time']:8.2f}s  track {event['track_id']}: {event['identity'] or event['decision']}"
                      f"{score} at {event['resolution']:.0f} px", flush=True)

        try:
            summary = pipeline.run(args.source, events=args.events, output_video=args.out,
                                   max_frames=args.max_frames, on_event=show)
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
            return 130
    for track in summary["tracks"]:
        who = track["identity"] or track["decision"]
        print(f"track {track['track_id']}: frames {track['first_frame']}-{track['last_frame']}, {who}"
              + ("" if track["score"] is None else f" (score {track['score']:.2f})"))
    print(json.dumps({k: summary[k] for k in ("frames_read", "frames_processed", "faces", "processed_fps")}))
    print(f"events: {args.events}" + (f", video: {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
