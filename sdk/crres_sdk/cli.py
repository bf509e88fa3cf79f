"""The ``crres`` command line: enrol, identify, run a stream, inspect the gallery and the models.

    crres enroll --gallery people.db alice alice1.jpg alice2.jpg
    crres enroll --gallery people.db --folder photos/          # one sub-folder per person
    crres identify --gallery people.db frame.jpg [--json]
    crres run --gallery people.db --source 0|video.mp4|rtsp://...|"<gstreamer pipeline>" [--events e.jsonl --output o.mp4]
    crres gallery list|remove NAME|rename OLD NEW|export FILE|import FILE|audit --gallery people.db
    crres gallery photos NAME | remove-photo NAME PHOTO.jpg|HASH --gallery people.db
    crres models list | fetch | info [NAME|PATH]
    crres bench [--model M --backend B]

Exit codes: 0 success, 1 runtime failure (no face, unreadable image, model error), 2 bad arguments.
Errors are one line on stderr, never a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class CliError(Exception):
    """A failure reported as one line (exit 1)."""


def _common_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="model bundle name or folder (default: the shipped one)")
    p.add_argument("--backend", default="auto", help="auto | onnxruntime | openvino | tensorrt")
    p.add_argument("--device", default="cpu", help="backend device: cpu, cuda, tensorrt (ORT); cpu, gpu, npu (OpenVINO)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "int8"))
    p.add_argument("--threads", type=int, help="CPU threads per inference call")
    p.add_argument("--min-face", type=int, default=12, help="smallest face the detector looks for (px, >= 6; below 12 the frame is upsampled, slower)")
    p.add_argument("--fpir", default="0.01",
                   help="1:N: the chance a stranger is named (false positive identification rate; default 0.01); "
                        "the threshold follows the gallery's size. 'none' = decide at the per-pair --far instead")
    p.add_argument("--far", default="1e-3", help="1:1 verify: per-pair false-accept rate (default 1e-3)")
    p.add_argument("--matching", default="plain", choices=("plain", "mitm"),
                   help="plain resolution-matched search, or meet-in-the-middle (needs a gallery enrolled with it)")
    p.add_argument("--pairing", default="auto", choices=("auto", "matched", "hr"),
                   help="plain matching: compare a probe with the gallery templates nearest its resolution "
                        "(matched), with the HR ones (hr), or per resolution whichever the model's held-out "
                        "calibration favours (auto, default)")


def _gallery_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--gallery", required=required, help="gallery database file (SQLite)")
    p.add_argument("--key-file", help="AES-256 key file of an encrypted gallery")
    p.add_argument("--key-env", help="environment variable holding the gallery key (hex or base64)")
    p.add_argument("--integrity-key-file", help="a plain gallery's integrity key, when not beside it "
                                                "(default GALLERY.integrity-key)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crres", description="Cross-resolution face recognition (crres SDK).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enroll", help="enrol a person from photos, or a folder of people")
    _common_model_args(p)
    _gallery_args(p)
    p.add_argument("name", nargs="?", help="identity name (omit with --folder)")
    p.add_argument("images", nargs="*", help="photos of the person")
    p.add_argument("--folder", help="folder with one sub-folder of photos per person (name = sub-folder)")
    p.add_argument("--replace", action="store_true", help="replace the identity's templates instead of adding")
    p.add_argument("--min-resolution", type=float, default=None,
                   help="refuse faces below this resolution in px (default: the SDK's, 24; 0 = no minimum)")
    p.add_argument("--skip-missing", action="store_true",
                   help="with --folder: skip photos without a face instead of failing the person")

    p = sub.add_parser("identify", help="identify the faces in an image")
    _common_model_args(p)
    _gallery_args(p)
    p.add_argument("image")
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("verify", help="are the largest faces of two images the same person?")
    _common_model_args(p)
    p.add_argument("image_a")
    p.add_argument("image_b")

    p = sub.add_parser("run", help="run the video pipeline on a camera, file, RTSP URL or GStreamer pipeline")
    _common_model_args(p)
    _gallery_args(p)
    p.add_argument("--source", required=True, help="camera index, video file, rtsp:// URL or GStreamer pipeline")
    p.add_argument("--events", help="write events as JSON lines here")
    p.add_argument("--output", help="write the annotated video here (.mp4)")
    p.add_argument("--max-frames", type=int)
    p.add_argument("--every-n", type=int, default=1, help="process every n-th frame")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("gallery", help="inspect and edit a gallery")
    gsub = p.add_subparsers(dest="action", required=True)
    for name, help_ in (("list", "identities and template counts"), ("audit", "the append-only audit log"),
                        ("check", "integrity check (SQLite, keyed MACs of every row, keyed audit chain and head)"),
                        ("upgrade", "upgrade a gallery of an older format in place (checked first)")):
        q = gsub.add_parser(name, help=help_)
        _gallery_args(q)
        q.add_argument("--json", action="store_true")
    q = gsub.add_parser("remove", help="delete an identity (secure delete)")
    _gallery_args(q)
    q.add_argument("name")
    q = gsub.add_parser("photos", help="list an identity's enrolment photos (source hash, templates, resolution)")
    _gallery_args(q)
    q.add_argument("name")
    q.add_argument("--json", action="store_true")
    q = gsub.add_parser("remove-photo", help="delete one enrolment photo of an identity (its templates)")
    _gallery_args(q)
    q.add_argument("name")
    q.add_argument("photo", help="the photo file (hashed as at enrolment) or its source hash (>= 8 hex characters)")
    q = gsub.add_parser("rename", help="rename an identity")
    _gallery_args(q)
    q.add_argument("old")
    q.add_argument("new")
    q = gsub.add_parser("export", help="export a consistent copy (keeps the model binding)")
    _gallery_args(q)
    q.add_argument("file")
    q.add_argument("--decrypt", action="store_true", help="export decrypted templates (explicit opt-in)")
    q.add_argument("--overwrite", action="store_true")
    q = gsub.add_parser("import", help="import an export of the same model")
    _gallery_args(q)
    q.add_argument("file")
    q.add_argument("--on-conflict", default="error", choices=("skip", "replace", "error"))

    p = sub.add_parser("models", help="list, check, fetch and describe model bundles")
    msub = p.add_subparsers(dest="action", required=True)
    q = msub.add_parser("list", help="the default set (embedder, detector, estimator) and every bundle found, with "
                                     "where each came from; exit 1 when the default set is incomplete")
    q.add_argument("--json", action="store_true")
    q = msub.add_parser("fetch", help="build the MTCNN detector bundle from the MIT-licensed weights in PyPI's "
                                      "facenet-pytorch wheel (no torch needed)")
    q.add_argument("--dir", help="where to write the bundle (default: the user cache, ~/.cache/crres/models/mtcnn)")
    q.add_argument("--wheel", help="a facenet-pytorch wheel already downloaded (default: pip download it)")
    q.add_argument("--force", action="store_true", help="rebuild even when a valid bundle is already there")
    q = msub.add_parser("info", help="a bundle's manifest summary")
    q.add_argument("model", nargs="?", default="default")
    q.add_argument("--json", action="store_true")

    p = sub.add_parser("bench", help="time detection and embedding on this machine (median of repeats)")
    _common_model_args(p)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batch", type=int, default=8, help="faces per embedding call")

    from crres_sdk.serve.command import add_arguments as serve_arguments  # standard library only

    serve_arguments(sub.add_parser("serve", help="the service: cameras, REST API, MQTT events, operator page "
                                                 "(pip install \"crres[serve]\")"))
    return parser


# ------------------------------------------------------------------------------------------------ commands


def _recognizer(args: argparse.Namespace, gallery: bool = True):
    from crres_sdk.recognizer import Recognizer

    if args.threads is not None and args.threads < 1:
        raise SystemExit(_usage_error("--threads must be >= 1"))
    extra = {}
    if getattr(args, "min_resolution", None) is not None:
        extra["min_enroll_resolution"] = None if args.min_resolution <= 0 else args.min_resolution
    fpir = None if str(args.fpir).lower() == "none" else args.fpir
    return Recognizer(args.model, backend=args.backend, device=args.device, precision=args.precision,
                      threads=args.threads, detector={"min_face": args.min_face}, fpir=fpir, far=args.far,
                      matching=args.matching, pairing=args.pairing, **extra,
                      gallery=args.gallery if gallery else None,
                      key_file=getattr(args, "key_file", None), key_env=getattr(args, "key_env", None),
                      integrity_key_file=getattr(args, "integrity_key_file", None))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def cmd_enroll(args: argparse.Namespace) -> int:
    from crres_sdk.recognizer import NoFaceError

    if args.folder:
        if args.name or args.images:
            raise SystemExit(_usage_error("give either NAME IMAGES... or --folder, not both"))
        root = Path(args.folder)
        if not root.is_dir():
            raise SystemExit(_usage_error(f"--folder {root} is not a directory"))
        people = [(d.name, _images_in(d)) for d in sorted(root.iterdir()) if d.is_dir()]
        people = [(name, imgs) for name, imgs in people if imgs]
        if not people:
            raise SystemExit(_usage_error(f"{root} has no sub-folders with images ({', '.join(sorted(IMAGE_SUFFIXES))})"))
    else:
        if not args.name or not args.images:
            raise SystemExit(_usage_error("enroll needs NAME and at least one IMAGE (or --folder DIR)"))
        people = [(args.name, [Path(p) for p in args.images])]
    with _recognizer(args) as rec:
        failed = 0
        for i, (name, images) in enumerate(people, 1):
            if args.skip_missing:
                usable = []
                for img in images:
                    try:
                        rec._largest_face(_load(img), img)
                        usable.append(img)
                    except (NoFaceError, ValueError) as exc:
                        print(f"  skip {img}: {exc}", file=sys.stderr)
                images = usable
                if not images:
                    failed += 1
                    continue
            try:
                n = rec.enroll(name, [str(p) for p in images], replace=args.replace)
            except (NoFaceError, ValueError, FileNotFoundError) as exc:
                if not args.folder:
                    raise CliError(str(exc)) from exc
                print(f"[{i}/{len(people)}] {name}: FAILED ({exc}); nothing stored for {name}", file=sys.stderr)
                failed += 1
                continue
            print(f"[{i}/{len(people)}] {name}: {len(images)} image(s), {n} templates")
        print(f"gallery {rec.gallery.path}: {len(rec.gallery)} identities, {rec.gallery.n_templates} templates")
    return 1 if failed else 0


def _load(path: Any) -> np.ndarray:
    from crres_sdk.recognizer import load_image

    try:
        return load_image(path)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from exc


def _face_json(face) -> dict:
    return {
        "box": [round(float(v), 1) for v in face.box],
        "detector_score": round(float(face.score), 4),
        "equivalent_resolution": round(float(face.equivalent_resolution), 1),
        "effective_resolution": None if face.effective_resolution is None else round(float(face.effective_resolution), 1),
        "identity": face.identity,
        "score": None if face.match_score is None else round(float(face.match_score), 4),
        "threshold": None if face.extra.get("threshold") is None else round(float(face.extra["threshold"]), 4),
        "decision": face.decision,
        "probe_resolution": None if face.match is None else round(float(face.match.probe_resolution), 1),
        "comparisons": None if face.match is None else face.match.comparisons,
        "pairing": None if face.match is None else face.match.pairing,
        "candidates": [{"identity": m.identity, "score": round(float(m.score), 4),
                        "template_resolution": m.template_resolution} for m in face.extra.get("candidates", [])],
    }


def cmd_identify(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise SystemExit(_usage_error("--top-k must be >= 1"))
    frame = _load(args.image)
    with _recognizer(args) as rec:
        faces = rec.identify(frame, top_k=args.top_k)
    records = [_face_json(f) for f in faces]
    if args.json:
        print(json.dumps({"image": args.image, "faces": records}, indent=1))
    elif not records:
        print(f"{args.image}: no face found")
    else:
        print(f"{'#':>2} {'box':>24} {'res px':>7} {'eff px':>7} {'identity':>16} {'score':>7} {'thr':>6} decision")
        for i, r in enumerate(records):
            eff = "-" if r["effective_resolution"] is None else f"{r['effective_resolution']:.1f}"
            score = "-" if r["score"] is None else f"{r['score']:.3f}"
            thr = "-" if r["threshold"] is None else f"{r['threshold']:.3f}"
            print(f"{i:>2} {str([int(v) for v in r['box']]):>24} {r['equivalent_resolution']:>7.1f} {eff:>7} "
                  f"{r['identity'] or '-':>16} {score:>7} {thr:>6} {r['decision']}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from crres_sdk.recognizer import NoFaceError

    a, b = _load(args.image_a), _load(args.image_b)
    with _recognizer(args, gallery=False) as rec:
        try:
            v = rec.verify(a, b)
        except NoFaceError as exc:
            raise CliError(str(exc)) from exc
    verdict = "unknown (model has no thresholds)" if v.same is None else ("same person" if v.same else "different")
    thr = "-" if v.threshold is None else f"{v.threshold:.3f}"
    print(f"score {v.score:.4f}  threshold {thr} at {v.resolution:.1f} px  ->  {verdict}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from crres_sdk.video import VideoPipeline

    if args.every_n < 1:
        raise SystemExit(_usage_error("--every-n must be >= 1"))
    with _recognizer(args) as rec:
        summary = VideoPipeline(rec, every_n=args.every_n).run(
            args.source, events=args.events, output_video=args.output, max_frames=args.max_frames,
            progress=not args.no_progress)
    print(json.dumps(summary, indent=1, default=str))
    return 0


def _open_gallery(args: argparse.Namespace, readonly: bool = False):
    from crres_sdk.gallery import Gallery, GalleryUpgradeRequired

    path = Path(args.gallery)
    if not path.is_file():
        raise CliError(f"no gallery at {path}")
    keys = {"key_file": args.key_file, "key_env": args.key_env}
    if args.integrity_key_file:
        keys["integrity_key_file"] = args.integrity_key_file
    try:
        return Gallery(path, None, create=False, readonly=readonly, **keys)
    except GalleryUpgradeRequired:  # an older format: upgrade it (checked first), as any write command would
        g = Gallery(path, None, create=False, **keys)
        print(f"crres: upgraded gallery {path} to the current format (integrity key added)", file=sys.stderr)
        return g


def cmd_gallery(args: argparse.Namespace) -> int:
    from crres_sdk.gallery import GalleryError

    readonly = args.action in ("list", "audit", "check", "export", "photos")
    with _open_gallery(args, readonly=readonly) as g:
        if args.action == "upgrade":
            print(f"gallery {g.path}: current format, {len(g)} identities")
        elif args.action == "list":
            rows = [{"name": i.name, "templates": i.n_templates, "resolutions": list(i.resolutions),
                     "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(i.created)),
                     "metadata": i.metadata} for i in g.identities()]
            if args.json:
                print(json.dumps({"gallery": str(g.path), "model": str(g.model), "identities": rows}, indent=1))
            else:
                print(f"gallery {g.path} (model {g.model}, {'encrypted' if g.encrypted else 'not encrypted'}): "
                      f"{len(rows)} identities")
                for r in rows:
                    print(f"  {r['name']:<32} {r['templates']:>4} templates  levels "
                          f"{','.join(f'{x:g}' for x in r['resolutions'])}  since {r['created']}")
        elif args.action == "audit":
            rows = [e._asdict() for e in g.audit_log()]
            if args.json:
                print(json.dumps(rows, indent=1))
            for e in rows if not args.json else []:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"]))
                print(f"{when}  {e['action']:<10} {e['identity'] or '-':<32} {e['count']}")
        elif args.action == "check":
            problems = g.check()
            print(json.dumps({"ok": not problems, "problems": problems}) if args.json else
                  ("ok" if not problems else "\n".join(problems)))
            return 1 if problems else 0
        elif args.action == "remove":
            n = g.remove(args.name)
            print(f"removed {args.name} ({n} templates, securely deleted)")
        elif args.action == "photos":
            rows = [{"source_hash": p.source_hash, "templates": p.n_templates, "resolution": round(p.resolution, 1),
                     "enrolled": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p.created))}
                    for p in g.photos(args.name)]
            if args.json:
                print(json.dumps({"identity": args.name, "photos": rows}, indent=1))
            for r in rows if not args.json else []:
                print(f"  {(r['source_hash'] or '<no hash>')[:16]:<16} {r['templates']:>3} templates  "
                      f"{r['resolution']:>6.1f} px  {r['enrolled']}")
        elif args.action == "remove-photo":
            from crres_sdk.recognizer import photo_hash

            photo = Path(args.photo)
            key = photo_hash(_load(photo)) if photo.is_file() else args.photo
            try:
                n = g.remove_photo(args.name, key)
            except GalleryError as exc:
                raise CliError(f"{args.photo}: {exc}" if photo.is_file() else str(exc)) from None
            print(f"removed photo {key[:16]} of {args.name} ({n} templates, securely deleted)")
        elif args.action == "rename":
            g.rename(args.old, args.new)
            print(f"renamed {args.old} -> {args.new}")
        elif args.action == "export":
            out = g.export(args.file, decrypt=args.decrypt, overwrite=args.overwrite)
            print(f"exported {len(g)} identities to {out}")
        elif args.action == "import":
            result = g.import_(args.file, on_conflict=args.on_conflict)
            print(f"imported from {args.file}: {result}")
    return 0


def _bundle_status(path: Path) -> tuple[Any, str | None]:
    """(bundle, None) when ``path`` loads with its hashes verified, else (None, the reason)."""
    from crres_sdk.bundle import load_bundle

    try:
        return load_bundle(path), None
    except Exception as exc:  # a broken bundle is reported, never fatal to the listing
        return None, str(exc)


def models_report() -> dict:
    """The default set and every bundle in the search path: name, task, version, origin, path, status."""
    from crres_sdk.bundle import DEFAULT_BUNDLES, fix_command, locate_bundle, model_sources

    def entry(name: str, path: Path, origin: str) -> dict:
        bundle, problem = _bundle_status(path)
        return {"name": name, "task": bundle.task if bundle else None, "bundle": bundle.name if bundle else None,
                "version": bundle.version if bundle else None, "origin": origin, "path": str(path),
                "status": "ok" if bundle else "invalid", "problem": problem}

    default = []
    for name, task in DEFAULT_BUNDLES.items():
        found = locate_bundle(name)
        row = entry(name, *found) if found else {"name": name, "task": task, "bundle": None, "version": None,
                                                 "origin": None, "path": None, "status": "missing",
                                                 "problem": "not found"}
        if row["status"] == "ok" and row["task"] != task:
            row.update(status="invalid", problem=f"holds a {row['task']!r} model, expected {task!r}")
        if row["status"] != "ok":
            row["fix"] = fix_command(name)
        default.append(row)
    others = []
    for source in model_sources():
        for manifest in sorted(source.root.glob("*/manifest.json")) if source.root.is_dir() else []:
            folder = manifest.parent
            if not any(r["path"] == str(folder) for r in default):
                row = entry(folder.name, folder, source.origin)
                first = locate_bundle(folder.name)
                if first is not None and first[0] != folder:
                    row["shadowed_by"] = str(first[0])
                others.append(row)
    sources = [{"origin": s.origin, "path": str(s.root), "exists": s.root.is_dir()} for s in model_sources()]
    return {"complete": all(r["status"] == "ok" for r in default), "default": default, "other": others,
            "search_path": sources}


def _print_models(report: dict) -> None:
    def line(r: dict) -> str:
        where = f"{r['origin']}: {r['path']}" if r["path"] else "-"
        version = f"{r['bundle']} {r['version']}" if r["bundle"] else "-"
        text = f"  {r['name']:<28} {r['task'] or '-':<22} {version:<42} {r['status']:<8} {where}"
        if r.get("shadowed_by"):
            text += f"  (shadowed by {r['shadowed_by']})"
        if r["status"] == "invalid":
            text += f"\n      {r['problem']}"
        return text

    print("default set:")
    for r in report["default"]:
        print(line(r))
    if report["other"]:
        print("other bundles:")
        for r in report["other"]:
            print(line(r))
    print("search path: " + " > ".join(f"{s['origin']} ({s['path']})" for s in report["search_path"]))


def cmd_models(args: argparse.Namespace) -> int:
    from crres_sdk.bundle import load_bundle, locate_bundle

    if args.action == "list":
        report = models_report()
        if args.json:
            print(json.dumps(report, indent=1))
        else:
            _print_models(report)
        if not report["complete"]:
            fixes = sorted({r["fix"] for r in report["default"] if r["status"] != "ok"})
            names = ", ".join(r["name"] for r in report["default"] if r["status"] != "ok")
            print(f"crres: the default model set is incomplete ({names}); fix: {' ; '.join(fixes)}", file=sys.stderr)
            return 1
        return 0
    if args.action == "fetch":
        return _fetch_detector(args)
    if args.model == "default" or os.sep in args.model or Path(args.model).is_dir():
        from crres_sdk.recognizer import find_model_bundle

        path = find_model_bundle(args.model)
    else:
        found = locate_bundle(args.model)
        if found is None:
            raise CliError(f"no bundle named {args.model!r} (crres models list shows the bundles found)")
        path = found[0]
    b = load_bundle(path)
    m = dict(b.manifest)
    if args.json:
        print(json.dumps(m, indent=1))
        return 0
    print(f"{b.name} {b.version} ({b.task}) at {b.root}  [hashes verified]")
    print(f"  input: {m['input']}")
    if "embedding_dim" in m:
        print(f"  embedding: {m['embedding_dim']}-d")
    for target, roles in m["files"].items():
        for role, entry in roles.items():
            print(f"  file {target}/{role}: {entry['path']}")
    th = m.get("thresholds")
    if th:
        for far, values in th.get("far", {}).items():
            print(f"  thresholds @FAR {far}: " + ", ".join(f"{r}px {v:.3f}" for r, v in zip(th["resolutions"], values)))
    for key in ("recipe", "data", "licence", "accuracy"):
        if key in m:
            print(f"  {key}: {json.dumps(m[key])[:300]}")
    return 0


def _fetch_detector(args: argparse.Namespace) -> int:
    """crres models fetch: the MTCNN bundle converted without torch by crres_sdk.mtcnn_convert, then hash-checked."""
    from crres_sdk.bundle import load_bundle, user_models_dir
    from crres_sdk.dependencies import MissingDependencyError, installed, missing_message

    out = Path(args.dir).expanduser() if args.dir else user_models_dir() / "mtcnn"
    if not args.force and (out / "manifest.json").is_file():
        bundle, problem = _bundle_status(out)
        if bundle is not None:
            print(f"{out}: {bundle.name} {bundle.version} already there (hashes verified); --force rebuilds it")
            return 0
        print(f"crres: {out} is not a valid bundle ({problem}); rebuilding it", file=sys.stderr)
    try:
        from crres_sdk.mtcnn_convert import build_bundle
    except ModuleNotFoundError as exc:
        if exc.name == "crres_sdk.mtcnn_convert":
            raise CliError("this crres has no torch-free detector converter (crres_sdk.mtcnn_convert); from a source "
                           "checkout build the bundle with `make setup`, or copy a built mtcnn bundle folder to "
                           f"{out}") from None
        raise
    wheel = Path(args.wheel).expanduser() if args.wheel else None
    if wheel is not None and not wheel.is_file():
        raise CliError(f"--wheel {wheel}: no such file")
    if not installed("onnx"):  # the converter writes the networks with onnx.helper
        raise MissingDependencyError(missing_message("onnx", "crres models fetch"))
    print(f"building the MTCNN detector bundle in {out} (weights: facenet-pytorch, MIT licence)", file=sys.stderr)
    built = load_bundle(build_bundle(out, wheel=wheel), task="face-detection")
    print(f"{built.root}: {built.name} {built.version} ({built.task}), hashes verified")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from crres_sdk.recognizer import landmarks_from_boxes

    if args.repeats < 1 or args.batch < 1:
        raise SystemExit(_usage_error("--repeats and --batch must be >= 1"))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    with _recognizer(args, gallery=False) as rec:
        boxes = np.array([[100 + 150 * i, 100, 212 + 150 * i, 212] for i in range(args.batch)], np.float64)
        landmarks = landmarks_from_boxes(boxes)
        timings: dict[str, list[float]] = {"detect_1080p": [], f"embed_batch{args.batch}": []}
        for _ in range(args.repeats + 1):  # first run warms up
            t = time.perf_counter()
            rec.detect(frame)
            timings["detect_1080p"].append(time.perf_counter() - t)
            t = time.perf_counter()
            rec.embed(frame, landmarks)
            timings[f"embed_batch{args.batch}"].append(time.perf_counter() - t)
        result = {"model": rec.bundle.name, "backend": rec.backend, "precision": rec.precision,
                  "file": rec.model_file, "threads": args.threads,
                  "median_s": {k: statistics.median(v[1:]) for k, v in timings.items()}}
        result["embed_per_face_ms"] = 1000 * result["median_s"][f"embed_batch{args.batch}"] / args.batch
    print(json.dumps(result, indent=1))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from crres_sdk.serve.command import serve_command

    return serve_command(args)


COMMANDS = {"enroll": cmd_enroll, "identify": cmd_identify, "verify": cmd_verify, "run": cmd_run,
            "gallery": cmd_gallery, "models": cmd_models, "bench": cmd_bench, "serve": cmd_serve}


def _usage_error(message: str) -> int:
    print(f"crres: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    from crres_sdk.dependencies import EXTRAS, missing_message
    from crres_sdk.errors import BackendUnavailableError, BundleError
    from crres_sdk.gallery import GalleryError

    args = build_parser().parse_args(argv)
    if not args.debug:  # FFmpeg's per-macroblock decoder complaints would bury the one-line error we print
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        return COMMANDS[args.command](args)
    except SystemExit:
        raise
    except (CliError, BundleError, GalleryError, BackendUnavailableError, FileNotFoundError, ValueError,
            TypeError, KeyError, RuntimeError, OSError, sqlite3.Error, ImportError) as exc:
        if args.debug:
            raise
        message = str(exc) if not isinstance(exc, KeyError) or not exc.args else str(exc.args[0])
        kind = "" if isinstance(exc, CliError) else f"{type(exc).__name__}: "
        if isinstance(exc, ModuleNotFoundError) and exc.name in EXTRAS:  # an optional dependency: name its extra
            message, kind = missing_message(exc.name, f"crres {args.command}"), ""
        print(f"crres: {kind}{message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("crres: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
