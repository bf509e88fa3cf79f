"""The crres demo: enrol a real face, watch it walk away from a CCTV camera, and see where recognition holds.

    python examples/demo.py --out out/demo                 # what `make demo` runs
    python examples/demo.py --model PATH --batch-size 1    # another model bundle

1. Gallery: scikit-image's astronaut photo (a real, public-domain NASA portrait) is enrolled as "astronaut"
   (HR template plus templates of its degraded crop, DESIGN section 4). Distractors: real faces from
   ``skimage.data.lfw_subset()`` (25 x 25 grey LFW crops; their identities are not published with the subset,
   so each is enrolled under its index, e.g. ``lfw_subset_07``, and two could even be the same person). They are
   aligned by MTCNN run on a 4x upscale, with the landmarks mapped back to the 25 px original, so their
   templates honestly carry ~26 px of information. These are the only other real faces that ship with our
   dependencies.
2. Clip: :func:`crres_demo.clip.render_receding_clip` renders the astronaut walking away from a static
   camera until her face is 8 px across (face size r = 112 * eye distance / 35.24, the papers' resolution),
   with optical blur, sensor noise and JPEG compression per frame.
3. Recognition, two ways, both through :class:`crres_sdk.video.VideoPipeline` (IoU tracker, per-track
   resolution-weighted template accumulation, matching at each face's resolution):
   a) detector path: MTCNN finds the face (down to ~12-16 px: P-Net's 12 px window);
   b) caller-supplied boxes path: the ground-truth boxes are passed in, as an external tracker would, so the
      faces too small to detect are still recognised (``Recognizer.identify(frame, faces=[box])``, also called
      directly per frame for the single-frame scores).
4. Output in ``--out``: ``demo.mp4`` (detector path, annotated), ``demo_boxes.mp4`` (caller boxes),
   ``events.jsonl`` / ``events_boxes.jsonl`` (the pipeline's JSON lines), ``score_vs_size.png`` (score,
   threshold and decision vs face size), ``summary.json``, and a table on stdout.

Runs in well under two minutes on two CPU cores. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from crres_demo.clip import render_receding_clip
from crres_sdk import BundleError, Recognizer
from crres_sdk.video import FrameSource, IoUTracker, VideoPipeline, iou_matrix

NAME = "astronaut"
TABLE_SIZES = (112, 80, 56, 40, 28, 20, 16, 14, 12, 10, 8)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    p.add_argument("--model", default="default", help="embedding model bundle: 'default', a name or a folder")
    p.add_argument("--backend", default="auto", help="auto | onnxruntime | openvino | tensorrt")
    p.add_argument("--batch-size", type=int, default=32, help="faces per inference call (1 for static-batch models)")
    p.add_argument("--frames", type=int, default=60, help="clip length in frames (default 60)")
    p.add_argument("--distractors", type=int, default=10, help="LFW-subset distractor identities (0-100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scene and the camera noise")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.frames < 8:
        p.error("--frames must be >= 8")
    if not 0 <= args.distractors <= 100:
        p.error("--distractors must be in [0, 100]")
    return args


def astronaut() -> np.ndarray:
    from skimage import data
    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])  # RGB -> BGR, as a camera app holds frames


def fresh_gallery(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return path


def enroll_distractors(rec: Recognizer, count: int) -> list[dict]:
    """Enrol up to ``count`` LFW-subset faces; returns what was enrolled (index, resolution) or skipped."""
    from skimage import data
    faces = data.lfw_subset()[:100]  # the first 100 of the 200 images are faces, the rest are not
    enrolled = []
    for index in range(100):
        if len([e for e in enrolled if e["enrolled"]]) >= count:
            break
        grey = np.clip(np.rint(faces[index] * 255), 0, 255).astype(np.uint8)
        small = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
        up = cv2.resize(small, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
        found = rec.detect(up)
        if not found:
            enrolled.append({"index": index, "enrolled": False, "reason": "MTCNN found no face on the 4x upscale"})
            continue
        best = max(found, key=lambda f: f.width * f.height)
        landmarks = (best.landmarks.astype(np.float64) + 0.5) / 4 - 0.5  # cv2.resize pixel-centre mapping
        name = f"lfw_subset_{index:02d}"
        n = rec.enroll(name, small, faces=[landmarks], metadata={"source": f"skimage.data.lfw_subset()[{index}]"})
        face = rec.faces_from(small, landmarks)[0]
        enrolled.append({"index": index, "name": name, "enrolled": True, "templates": n,
                         "equivalent_resolution": round(face.equivalent_resolution, 1),
                         "effective_resolution": None if face.effective_resolution is None else
                         round(face.effective_resolution, 1)})
    return enrolled


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def per_frame(events: list[dict], boxes: np.ndarray) -> tuple[dict[int, dict], int]:
    """The face event of each frame that overlaps the ground-truth box best (IoU >= 0.3); other faces count as
    false detections."""
    best: dict[int, dict] = {}
    false_faces = 0
    for e in events:
        if e["type"] != "face":
            continue
        iou = float(iou_matrix(np.array([e["box"]]), boxes[e["frame"]][None])[0, 0])
        if iou < 0.3:
            false_faces += 1
            continue
        if e["frame"] in best:
            false_faces += 1
            if iou <= best[e["frame"]]["iou"]:
                continue
        best[e["frame"]] = {**e, "iou": iou}
    return best, false_faces


def impostor(candidates: list) -> float | None:
    """The best score of any identity other than the astronaut among a face's candidates."""
    scores = [c[1] for c in candidates if c[0] != NAME]
    return max(scores) if scores else None


def summarise(cell: dict | None) -> dict | None:
    """Decision, best score, threshold, and the astronaut's own score and the best distractor's among the
    candidates (the pipelines run with top_k = every identity, so both are always there)."""
    if cell is None:
        return None
    cands = cell["candidates"]
    astro = [score for name, score in cands if name == NAME]
    return {"identity": cell["identity"], "score": cell["score"], "threshold": cell["threshold"],
            "decision": cell["decision"], "astronaut_score": astro[0] if astro else None,
            "best_distractor_score": impostor(cands)}


def fmt(cell: dict | None) -> str:
    if cell is None:
        return "-"
    who = cell["identity"] or cell["decision"]
    score = "" if cell["score"] is None else f" {cell['score']:.2f}"
    return f"{who}{score}"


def plot(path: Path, rows: list[dict], lost_below: float | None, model: str) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed, so no plot was written (pip install matplotlib)", file=sys.stderr)
        return None
    size = np.array([r["face_px"] for r in rows])
    fig, (ax, ax_r) = plt.subplots(2, 1, figsize=(9, 8.5), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    series = [("detector, single frame", "detector", "tab:blue", "o"),
              ("detector, track template", "detector_track", "tab:cyan", "s"),
              ("caller boxes, single frame: identify(frame, faces=[box])", "boxes", "tab:red", "^"),
              ("caller boxes, track template", "boxes_track", "tab:orange", "D")]
    for label, key, colour, marker in series:
        xs = np.array([r["face_px"] for r in rows if r[key] is not None])
        cells = [r[key] for r in rows if r[key] is not None]
        if not cells:
            continue
        ys = np.array([np.nan if c["astronaut_score"] is None else c["astronaut_score"] for c in cells])
        right = np.array([c["identity"] == NAME for c in cells])
        wrong = np.array([c["decision"] == "match" and c["identity"] != NAME for c in cells])
        unknown = ~right & ~wrong
        ax.plot(xs, ys, "-", color=colour, lw=1, alpha=0.7)
        ax.scatter(xs[right], ys[right], color=colour, marker=marker, s=22, label=label)
        ax.scatter(xs[unknown], ys[unknown], facecolors="none", edgecolors=colour, marker=marker, s=22)
        ax.scatter(xs[wrong], ys[wrong], color=colour, marker="x", s=40)
    thr = [(r["face_px"], r["boxes"]["threshold"]) for r in rows if r["boxes"] and r["boxes"]["threshold"] is not None]
    if thr:
        ax.plot(*zip(*thr), "k--", lw=1, label="threshold at the face's probe resolution")
    imp = [(r["face_px"], r["boxes"]["best_distractor_score"]) for r in rows
           if r["boxes"]["best_distractor_score"] is not None]
    if imp:
        ax.plot(*zip(*imp), ":", color="grey", lw=1.2, label="best distractor score (caller boxes)")
    if lost_below is not None:
        for a in (ax, ax_r):
            a.axvspan(size.min() * 0.95, lost_below, color="0.9", zorder=0)
        ax.text(lost_below, 0.98, "  no detection", transform=ax.get_xaxis_transform(), va="top", ha="left",
                fontsize=8)
    ax.set_ylabel("astronaut's score (fused cosine)")

    ax.set_title(f"crres demo: the astronaut walks away from the camera ({model})\n"
                 "filled: decided astronaut, hollow: unknown, x: matched a distractor", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    for label, key, colour in (("equivalent (MTCNN landmarks)", "det_equivalent", "tab:blue"),
                               ("effective (blind estimate, detector)", "det_effective", "tab:cyan"),
                               ("effective (blind estimate, caller boxes)", "box_effective", "tab:red")):
        pts = [(r["face_px"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax_r.plot(*zip(*pts), ".-", color=colour, lw=1, ms=4, label=label)
    ax_r.plot([size.max(), size.min()], [size.max(), size.min()], "k:", lw=1, label="true face size")
    ax_r.set_xscale("log")
    ax_r.set_yscale("log")
    ax_r.set_xlim(size.max() * 1.05, size.min() * 0.95)  # left to right: the person walks away
    ticks = [t for t in TABLE_SIZES if size.min() <= t <= size.max()]
    ax_r.set_xticks(ticks)
    ax_r.set_xticklabels([str(t) for t in ticks])
    ax_r.set_xlabel("true face size r (px, 112 x eye distance / 35.24)")
    ax_r.set_ylabel("resolution (px)")
    ax_r.legend(fontsize=7, loc="upper right")
    ax_r.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    gallery_path = fresh_gallery(out / "gallery.db")
    try:
        # min_enroll_resolution=None: the distractors are 25 x 25 LFW-subset faces (~20 px), below the SDK's
        # 24 px enrolment minimum; the demo enrols them anyway to crowd the gallery with strangers.
        rec = Recognizer(args.model, backend=args.backend, gallery=gallery_path, batch_size=args.batch_size,
                         min_enroll_resolution=None)
    except BundleError as exc:
        print(f"error: {exc}\n(pass --model PATH to use another embedding bundle)", file=sys.stderr)
        return 2
    model = f"{rec.bundle.name} {rec.bundle.version}"
    print(f"model: {model} on {rec.backend}/{rec.precision}; detector: MTCNN, min face {rec.detector.min_face} px")

    # 1. The gallery.
    photo = astronaut()
    n_templates = rec.enroll(NAME, photo, metadata={"source": "skimage.data.astronaut()"})
    hr_face = max(rec.detect(photo), key=lambda f: f.width * f.height)
    distractors = enroll_distractors(rec, args.distractors)
    n_distractors = sum(d["enrolled"] for d in distractors)
    print(f"gallery: {NAME} ({n_templates} templates, face {hr_face.equivalent_resolution:.0f} px in the photo) "
          f"+ {n_distractors} LFW-subset distractors (25 x 25 grey faces, identities unknown)")

    # 2. The clip: the person walks away from a static camera.
    clip = render_receding_clip(photo, hr_face.landmarks, n_frames=args.frames, start_px=112, end_px=8,
                                size=(640, 360), fps=10.0, seed=args.seed)
    print(f"clip: {len(clip)} frames 640x360, face {clip.face_px[0]:.0f} -> {clip.face_px[-1]:.0f} px, "
          "blur + sensor noise + JPEG per frame")

    # 3a. Detector path.
    progress = not args.quiet
    source = FrameSource(clip.frames, fps=clip.fps, description="synthetic receding clip")
    top_k = len(rec.gallery)  # every identity: the astronaut's own score is always reported
    det_summary = VideoPipeline(rec, top_k=top_k).run(source, events=out / "events.jsonl",
                                                  output_video=out / "demo.mp4", progress=progress)
    det, false_faces = per_frame(read_events(out / "events.jsonl"), clip.boxes)

    # 3b. Caller-supplied boxes: the pipeline with an external "detector" (the ground truth), and identify().
    boxes_pipe = VideoPipeline(rec, top_k=top_k, tracker=IoUTracker(min_hits=1),
                               faces=lambda i, frame: clip.boxes[i:i + 1])
    box_summary = boxes_pipe.run(FrameSource(clip.frames, fps=clip.fps, description="synthetic receding clip"),
                                 events=out / "events_boxes.jsonl", output_video=out / "demo_boxes.mp4",
                                 progress=progress)
    box_track, _ = per_frame(read_events(out / "events_boxes.jsonl"), clip.boxes)
    single = [rec.identify(frame, faces=[box], top_k=top_k)[0] for frame, box in zip(clip.frames, clip.boxes)]

    rows = []
    for i, r in enumerate(clip.face_px):
        d, b, s = det.get(i), box_track.get(i), single[i]
        rows.append({
            "frame": i, "face_px": round(float(r), 2), "detected": d is not None,
            "det_equivalent": None if d is None else d["equivalent_resolution"],
            "det_effective": None if d is None else d["effective_resolution"],
            "box_effective": s.effective_resolution,
            "detector": summarise(d),
            "detector_track": summarise(None if d is None else d["track"]),
            "boxes": summarise({"identity": s.identity, "score": s.match_score, "threshold": s.extra["threshold"],
                                "decision": s.decision,
                                "candidates": [[c.identity, c.score] for c in s.extra["candidates"]]}),
            "boxes_track": summarise(None if b is None else b["track"]),
        })
    detected = [r["face_px"] for r in rows if r["detected"]]
    smallest_detected = min(detected) if detected else None
    lost = [r["face_px"] for r in rows if not r["detected"] and (smallest_detected is None
                                                                  or r["face_px"] < smallest_detected)]
    lost_below = max(lost) if lost else None

    def reach(key: str) -> float | None:
        """The smallest face size down to which every frame of a path was decided "astronaut"."""
        last = None
        for r in rows:
            cell = r[key]
            if cell is None or cell["identity"] != NAME:
                break
            last = r["face_px"]
        return last

    wrong = {key: sum(1 for r in rows if r[key] and r[key]["decision"] == "match" and r[key]["identity"] != NAME)
             for key in ("detector", "detector_track", "boxes", "boxes_track")}
    png = plot(out / "score_vs_size.png", rows, lost_below, model)

    summary = {
        "model": model, "backend": rec.backend, "precision": rec.precision, "far": rec.far,
        "gallery": {"path": str(gallery_path), "identities": len(rec.gallery), "astronaut_templates": n_templates,
                    "distractors": distractors},
        "clip": clip.settings,
        "detection": {"frames_with_face": len(detected), "smallest_detected_px": smallest_detected,
                      "lost_below_px": lost_below, "false_detections": false_faces},
        "recognised_down_to_px": {k: reach(k) for k in ("detector", "detector_track", "boxes", "boxes_track")},
        "wrong_identity_matches": wrong,
        "pipelines": {"detector": det_summary, "boxes": box_summary},
        "rows": rows,
        "files": {"video": str(out / "demo.mp4"), "video_boxes": str(out / "demo_boxes.mp4"),
                  "events": str(out / "events.jsonl"), "events_boxes": str(out / "events_boxes.jsonl"),
                  "plot": None if png is None else str(png), "summary": str(out / "summary.json")},
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=_json_default))

    print("\n(each cell: decided identity or decision, best score; track = the track's accumulated template)")
    header = ("face px", "detected", "detector", "detector track", "identify(faces=[box])", "boxes track")
    print(f"{header[0]:>7} {header[1]:>8}  {header[2]:<19} {header[3]:<19} {header[4]:<21} {header[5]}")
    for target in TABLE_SIZES:
        r = rows[int(np.argmin([abs(x["face_px"] - target) for x in rows]))]
        print(f"{r['face_px']:7.1f} {'yes' if r['detected'] else 'no':>8}  {fmt(r['detector']):<19} "
              f"{fmt(r['detector_track']):<19} {fmt(r['boxes']):<21} {fmt(r['boxes_track'])}")
    print(f"\ndetection: face found in {len(detected)}/{len(rows)} frames"
          + (f"; none at {lost_below:.1f} px and below (MTCNN needs a face box of ~12 px or more), where only "
             "the caller-supplied boxes path continues" if lost_below else "") + f"; {false_faces} false detections")
    print("recognised as astronaut in every frame down to: "
          + ", ".join(f"{k} {v if v is None else f'{v:.1f} px'}" for k, v in summary["recognised_down_to_px"].items()))
    print(f"matches to a wrong identity: {wrong}")
    print(f"\nwrote {out / 'demo.mp4'} (detector path) and {out / 'demo_boxes.mp4'} (caller-supplied boxes)")
    print(f"wrote {out / 'events.jsonl'} and {out / 'events_boxes.jsonl'} (JSON lines, one per face per frame)")
    if png is not None:
        print(f"wrote {png}")
    print(f"wrote {out / 'summary.json'}  ({summary['elapsed_s']} s)")
    rec.close()
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    raise SystemExit(main())
