"""Hostile inputs, counted (issue 19): what a tampered gallery, a poisoned file, a lying name, a ghost face, a giant
image, a full disk or a broken bundle gets from crres.

    python -m benchmarks.hostile_inputs --json bench-results/hostile.json

Every input is tried once and classified:

* ``clear``: refused with a clear exception of the documented kind (or, for a gallery, its damage reported by
  ``check()`` while every read refuses or answers as before the edit);
* ``crash``: anything else escaped (an unexpected exception type, a traceback from the CLI);
* ``silent``: accepted, or answered differently, without an error (undetected);
* ``lost``: an acknowledged write missing after the event.

Tampering cases are the gallery edits of ``tests/hostile_cases.py`` on plain and encrypted galleries. Cases that
need the default model or torch are skipped (and counted as skipped) where those are missing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from crres_sdk import cli
from crres_sdk.bundle import load_bundle
from crres_sdk.errors import BundleError, FaceGeometryError, ImageTooLargeError
from crres_sdk.gallery import Gallery, GalleryError, ModelKey
from tests import hostile_cases as hc

ROOT = Path(__file__).resolve().parents[1]

RESULTS: list[dict] = []


def record(group: str, case: str, outcome: str, detail: str = "") -> None:
    RESULTS.append({"group": group, "case": case, "outcome": outcome, "detail": detail[:300]})
    print(f"  {outcome:<8} {group:<12} {case}" + (f"  ({detail[:110]})" if outcome != "clear" else ""))


def expect(group: str, case: str, fn, errors: tuple, match: str = "") -> None:
    """``fn()`` must raise one of ``errors`` whose message contains ``match``."""
    try:
        fn()
    except errors as exc:
        ok = match.lower() in str(exc).lower()
        record(group, case, "clear" if ok else "crash", f"{type(exc).__name__}: {exc}")
        return
    except Exception as exc:  # noqa: BLE001 - classified
        record(group, case, "crash", f"{type(exc).__name__}: {exc}")
        return
    record(group, case, "silent", "accepted without an error")


# ------------------------------------------------------------------------------------------------ groups


def tampering(tmp: Path) -> None:
    for encrypted in (False, True):
        for case, edit in sorted(hc.TAMPER_CASES.items()):
            if encrypted and case in hc.PLAIN_ONLY:
                continue
            path = tmp / f"t{len(RESULTS)}.db"
            hc.build(path, encrypted)
            with hc.open_gallery(path, encrypted) as g:
                before = hc.answers(g)
            edit(path, encrypted)
            kind, detail = hc.outcome(path, encrypted, before)
            record("tampering", f"{'encrypted' if encrypted else 'plain'}: {case}",
                   {"refused": "clear", "detected": "clear"}.get(kind, kind), detail)


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def poisoned_files(tmp: Path) -> None:
    try:
        import torch
    except ImportError:
        record("poisoned", "torch loaders", "skipped", "torch not installed")
        return
    from training import sr
    from training.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
    from evaluation.datasets import read_bin
    from evaluation.embedder import load_checkpoint_embedder

    cases = {
        "sr --resume": (lambda p: sr.load_resume_checkpoint(p), (SystemExit,), {}),
        "training checkpoint": (load_checkpoint, (ValueError,), {"format": CHECKPOINT_FORMAT, "format_version": 1}),
        "checkpoint embedder": (load_checkpoint_embedder, (ValueError,), {"model_name": "mobilefacenet"}),
    }
    for name, (loader, errors, extra) in cases.items():
        marker = tmp / f"pwned-{len(RESULTS)}"
        path = tmp / f"evil{len(RESULTS)}.pt"
        torch.save({**extra, "x": _Payload(str(marker))}, path)
        expect("poisoned", name, lambda: loader(path), errors)
        if marker.exists():
            RESULTS[-1]["outcome"] = "crash"
            RESULTS[-1]["detail"] = "the payload ran"
    marker = tmp / "pwned-bin"
    path = tmp / "evil.bin"
    path.write_bytes(pickle.dumps(([b"x", b"y"], [_Payload(str(marker))]), protocol=2))
    expect("poisoned", "InsightFace .bin", lambda: read_bin(path), (ValueError,))
    if marker.exists():
        RESULTS[-1]["outcome"] = "crash"


def names(tmp: Path) -> None:
    with Gallery(tmp / "names.db", hc.MODEL) as g:
        for name in ["\u202eecila", "ali\u200bce", "al\u200dice", "\ufeffalice", "a\u2066lice\u2069", "ali\u00adce",
                     "al\tice", "alice\nbob", "al\x7fice", "al\u2028ice", "al\ue000ice", "al\u0378ice", "al\u00a0ice",
                     "al\u200fice"]:
            expect("names", repr(name), lambda: g.enroll(name, hc.E[:1], [112]), (ValueError,), "U+")
        if len(g) != 0:
            record("names", "nothing stored", "silent", f"{len(g)} identities stored")


def geometry(tmp: Path, rec) -> None:
    from crres_sdk.recognizer import check_face_geometry, landmarks_from_boxes
    from tests.faces import ASTRONAUT_LANDMARKS, astronaut_bgr

    shape = (480, 640, 3)
    for case, lm in {"box far outside": landmarks_from_boxes(np.array([[5000.0, 5000, 5100, 5100]])),
                     "box 90% off the edge": landmarks_from_boxes(np.array([[-90.0, 100, 10, 200]])),
                     "box 1e12 wide": landmarks_from_boxes(np.array([[0.0, 0, 1e12, 1e12]])),
                     "landmarks x1e30": ASTRONAUT_LANDMARKS[None] * 1e30,
                     "landmarks on one point": np.full((1, 5, 2), 100.0)}.items():
        expect("faces", case, lambda: check_face_geometry(shape, lm), (FaceGeometryError,))
    if rec is None:
        record("faces", "Recognizer enrol/identify", "skipped", "no default model")
        return
    astro = astronaut_bgr()
    expect("faces", "enrol ghost box", lambda: rec.enroll("ghost", [astro], faces=[[5000, 5000, 5100, 5100]]),
           (FaceGeometryError,))
    expect("faces", "identify ghost box on a black frame",
           lambda: rec.identify(np.zeros((480, 640, 3), np.uint8), faces=[[5000, 5000, 5100, 5100]]),
           (FaceGeometryError,))
    expect("faces", "identify landmarks x1e30", lambda: rec.identify(astro, faces=ASTRONAUT_LANDMARKS * 1e30),
           (FaceGeometryError,))
    if "ghost" in rec.gallery:
        record("faces", "ghost stored", "silent", "the ghost was enrolled")


def giant(tmp: Path, rec) -> None:
    import struct
    import zlib

    from crres_sdk.recognizer import load_image

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    (tmp / "huge.png").write_bytes(png + b"\0" * 100)
    expect("giant", "30000x30000 PNG file", lambda: load_image(tmp / "huge.png"), (ImageTooLargeError,), "MP")
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 30000, 30000, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    (tmp / "huge.jpg").write_bytes(b"\xff\xd8" + sof + b"\0" * 100)
    expect("giant", "30000x30000 JPEG file", lambda: load_image(tmp / "huge.jpg"), (ImageTooLargeError,), "MP")
    big = np.zeros((10100, 10000, 3), np.uint8)  # 101 MP, never touched (calloc'd pages)
    if rec is not None:
        expect("giant", "101 MP frame to identify", lambda: rec.identify(big), (ImageTooLargeError,), "MP")
    else:
        from crres_sdk.recognizer import _check_frame
        expect("giant", "101 MP frame", lambda: _check_frame(big), (ImageTooLargeError,), "MP")


def bundles(tmp: Path) -> None:
    src = ROOT / "models" / "resolution_estimator"
    if not (src / "manifest.json").is_file():
        record("bundle", "all", "skipped", "no bundle to copy")
        return
    good = {"metric": "cosine", "resolutions": [7, 14, 112], "far": {"1e-3": [0.45, 0.5, 0.52],
                                                                      "1e-4": [0.55, 0.6, 0.6]}}
    bad = {"thresholds -1": {"far": {"1e-3": [-1.0, -1.0, -1.0]}},
           "threshold 0": {"far": {"1e-3": [0.45, 0.0, 0.52]}},
           "threshold > 1": {"far": {"1e-3": [0.45, 1.5, 0.52]}},
           "threshold NaN": {"far": {"1e-3": [0.45, float("nan"), 0.52]}},
           "stricter FAR, lower threshold": {"far": {"1e-3": [0.5, 0.6, 0.6], "1e-4": [0.55, 0.5, 0.7]}},
           "resolutions unsorted": {"resolutions": [14, 7, 112]},
           "wrong length": {"far": {"1e-3": [0.5, 0.5]}},
           "FAR key 2": {"far": {"2": [0.5, 0.5, 0.5]}}}
    for case, change in bad.items():
        b = tmp / f"b{len(RESULTS)}"
        shutil.copytree(src, b)
        m = json.loads((b / "manifest.json").read_text())
        m["thresholds"] = {**good, **change}
        (b / "manifest.json").write_text(json.dumps(m))
        expect("bundle", case, lambda: load_bundle(b), (BundleError,))
    try:
        from export.signing import generate_keypair, sign_bundle
    except ImportError:
        record("bundle", "signatures", "skipped", "cryptography not installed")
        return
    pub_a = generate_keypair(tmp / "a.key")
    generate_keypair(tmp / "b.key")

    def fresh() -> Path:
        b = tmp / f"s{len(RESULTS)}"
        shutil.copytree(src, b)
        m = json.loads((b / "manifest.json").read_text())
        m["thresholds"] = good
        (b / "manifest.json").write_text(json.dumps(m))
        sign_bundle(b, tmp / "a.key")
        return b

    b = fresh()
    (b / "manifest.sig").unlink()
    expect("bundle", "unsigned, key pinned", lambda: load_bundle(b, public_key=pub_a), (BundleError,))
    b = fresh()
    sign_bundle(b, tmp / "b.key")
    expect("bundle", "re-signed by another key", lambda: load_bundle(b, public_key=pub_a), (BundleError,))
    b = fresh()
    m = json.loads((b / "manifest.json").read_text())
    m["thresholds"]["far"] = {k: [0.01] * 3 for k in m["thresholds"]["far"]}
    (b / "manifest.json").write_text(json.dumps(m))
    expect("bundle", "thresholds lowered after signing", lambda: load_bundle(b, public_key=pub_a), (BundleError,))
    b = fresh()
    m = json.loads((b / "manifest.json").read_text())
    entry = m["files"]["onnx"]["estimator"]
    (b / entry["path"]).write_bytes((b / entry["path"]).read_bytes() + b"\0")
    import hashlib
    entry["sha256"] = hashlib.sha256((b / entry["path"]).read_bytes()).hexdigest()
    (b / "manifest.json").write_text(json.dumps(m))
    expect("bundle", "model swapped, sha256 updated", lambda: load_bundle(b, public_key=pub_a), (BundleError,))


def _create(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        Gallery(path, hc.MODEL).close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001
        results.put(f"{type(exc).__name__}: {exc}")


def failures(tmp: Path) -> None:
    import io
    from contextlib import redirect_stderr

    # Disk full mid-enrolment.
    path = tmp / "full.db"
    with Gallery(path, hc.MODEL) as g:
        g.enroll("alice", hc.E[:2], [112, 14])
        pages = g._writer.execute("PRAGMA page_count").fetchone()[0]
        g._writer.execute(f"PRAGMA max_page_count={pages + 2}")
        v = np.random.default_rng(0).standard_normal((3000, 8)).astype(np.float32)
        expect("failures", "disk full during enrol",
               lambda: g.enroll("bob", v / np.linalg.norm(v, axis=1, keepdims=True), np.full(3000, 112.0)),
               (GalleryError,), "disk is full")
        lost = list(g) != ["alice"] or g.check() != []
    if lost:
        record("failures", "disk full: earlier enrolment intact", "lost")
    # A corrupt gallery file, through the CLI.
    path = tmp / "corrupt.db"
    with Gallery(path, hc.MODEL) as g:
        for i in range(30):
            v = np.random.default_rng(i).standard_normal((50, 8)).astype(np.float32)
            g.enroll(f"p{i}", v / np.linalg.norm(v, axis=1, keepdims=True), np.full(50, 112.0))
        g.purge_wal()
    data = bytearray(path.read_bytes())
    for start in range(8192, len(data) - 4096, 12288):
        data[start:start + 4096] = os.urandom(4096)
    path.write_bytes(bytes(data))
    for action in ("list", "check"):
        err = io.StringIO()
        with redirect_stderr(err):
            try:
                code = cli.main(["gallery", action, "--gallery", str(path)])
            except BaseException as exc:  # noqa: BLE001
                code = f"raised {type(exc).__name__}"
        text = err.getvalue()
        ok = code == 1 and "Traceback" not in text
        record("failures", f"corrupt gallery: crres gallery {action}", "clear" if ok else "crash", f"{code} {text}")
    # Processes creating one gallery at once.
    ctx = multiprocessing.get_context("fork")
    outcomes = []
    for r in range(8):
        p = str(tmp / f"race{r}.db")
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_create, args=(p, barrier, results)) for _ in range(6)]
        for proc in procs:
            proc.start()
        outcomes += [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
    bad = [o for o in outcomes if o != "ok"]
    record("failures", f"{len(outcomes)} concurrent creates", "clear" if not bad else "crash",
           f"{len(bad)} failed: {bad[:1]}")
    # A corrupt mp4.
    import cv2

    from crres_sdk.video import VideoDecodeError, open_source

    mp4 = tmp / "bad.mp4"
    w = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 120))
    for i in range(60):
        f = np.full((120, 160, 3), 4 * i, np.uint8)
        cv2.circle(f, (20 + 2 * i, 60), 15, (0, 0, 255), -1)
        w.write(f)
    w.release()
    d = mp4.read_bytes()
    mp4.write_bytes(d[:len(d) // 10] + bytes(len(d) * 3 // 10) + d[len(d) * 4 // 10:])

    def read_all():
        with open_source(mp4) as src:
            for _ in src:
                pass
    expect("failures", "corrupt mp4", read_all, (VideoDecodeError,), "corrupt")


def sigkills(tmp: Path, kills: int) -> None:
    from tests import gallery_crash_worker as gw

    worker = ROOT / "tests" / "gallery_crash_worker.py"

    path = tmp / "crash.db"
    acknowledged: set[str] = set()
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, str(worker), "loop", str(path), "512", "1200", "2"],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        lines = []
        while not (lines and lines[-1].startswith("spilled")):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        acknowledged |= {"p" + x.split()[1] for x in lines if x.startswith("done")}
        with Gallery(path, gw.model(512)) as g:
            infos = g.identities()
            names_ = {i.name for i in infos}
            whole = all(i.n_templates == 1200 for i in infos)
            problems = g.check()
        if not acknowledged <= names_:
            record("durability", "SIGKILL mid-enrolment", "lost", f"missing {acknowledged - names_}")
        elif not whole or problems:
            record("durability", "SIGKILL mid-enrolment", "silent", f"partial or damaged: {problems[:1]}")
        else:
            record("durability", "SIGKILL mid-enrolment", "clear", "")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json")
    p.add_argument("--kills", type=int, default=5)
    args = p.parse_args()
    rec = None
    try:
        from crres_sdk.recognizer import Recognizer, find_model_bundle
        find_model_bundle("default")
    except BundleError:
        pass
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        try:
            rec = Recognizer(gallery=tmp / "rec.db", backend="onnxruntime")
        except (BundleError, NameError):
            rec = None
        for name, fn in (("tampering", lambda: tampering(tmp)), ("poisoned", lambda: poisoned_files(tmp)),
                         ("names", lambda: names(tmp)), ("faces", lambda: geometry(tmp, rec)),
                         ("giant", lambda: giant(tmp, rec)), ("bundle", lambda: bundles(tmp)),
                         ("failures", lambda: failures(tmp)), ("durability", lambda: sigkills(tmp, args.kills))):
            print(f"{name}:", flush=True)
            t = time.perf_counter()
            fn()
            print(f"  ({time.perf_counter() - t:.1f} s)")
        if rec is not None:
            rec.close()
    tried = [r for r in RESULTS if r["outcome"] != "skipped"]
    counts = Counter(r["outcome"] for r in tried)
    tamper = [r for r in tried if r["group"] == "tampering"]
    summary = {"inputs_tried": len(tried), "handled_with_clear_error": counts["clear"], "crashed": counts["crash"],
               "silently_wrong": counts["silent"], "data_lost": counts["lost"],
               "skipped": sum(r["outcome"] == "skipped" for r in RESULTS),
               "tampering_detected": sum(r["outcome"] == "clear" for r in tamper), "tampering_tried": len(tamper),
               "by_group": {g: dict(Counter(r["outcome"] for r in tried if r["group"] == g))
                            for g in dict.fromkeys(r["group"] for r in tried)}}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"summary": summary, "cases": RESULTS}, indent=1))
        print(f"wrote {args.json}")
    return 0 if counts["crash"] == counts["silent"] == counts["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
