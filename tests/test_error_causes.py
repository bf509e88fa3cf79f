"""Errors that name their cause (issue 19 item 6): a full disk, a corrupt gallery file, two processes creating the
same gallery, a corrupt video. Each gets one clear line (a non-zero exit from the CLI), and nothing is lost."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from crres_sdk import cli
from crres_sdk.gallery import Gallery, GalleryError, ModelKey
from crres_sdk.video import VideoDecodeError, VideoPipeline, open_source

D = 8
MODEL = ModelKey("test-model", "1", D)
E = np.eye(D, dtype=np.float32)


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _limit_pages(conn, extra_pages: int = 2) -> None:
    """Make the database 'full' a few pages from now, as a full disk would (SQLITE_FULL)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages + extra_pages}")


def test_disk_full_names_the_cause_and_loses_nothing(tmp_path):
    path = tmp_path / "g.db"
    with Gallery(path, MODEL) as g:
        g.enroll("alice", E[:2], [112, 14])
        _limit_pages(g._writer)
        with pytest.raises(GalleryError, match="nothing changed: database or disk is full") as err:
            g.enroll("bob", unit_rows(3000), np.full(3000, 112.0))
        assert "no transaction is active" not in str(err.value)
        assert list(g) == ["alice"] and g.n_templates == 2 and g.check() == []
        g._writer.execute("PRAGMA max_page_count=1073741823")  # space again: the next write works
        g.enroll("bob", E[2:3], [112])
        assert list(g) == ["alice", "bob"] and g.check() == []


def test_cli_disk_full_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    src = tmp_path / "src.db"
    with Gallery(src, MODEL) as g:
        for i in range(20):
            g.enroll(f"p{i}", unit_rows(200, i), np.full(200, 112.0))
        g.export(tmp_path / "big.export")
    dst = tmp_path / "dst.db"
    Gallery(dst, MODEL).close()
    real = Gallery._connect

    def connect_on_a_full_disk(self, writer):
        conn = real(self, writer)
        if writer and self.path == dst:
            _limit_pages(conn)
        return conn

    monkeypatch.setattr(Gallery, "_connect", connect_on_a_full_disk)
    code = cli.main(["gallery", "import", "--gallery", str(dst), str(tmp_path / "big.export")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "database or disk is full" in err and "Traceback" not in err
    monkeypatch.undo()
    with Gallery(dst, MODEL) as g:
        assert len(g) == 0 and g.check() == []


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = 4096
    for start in range(2 * page, len(data) - page, 3 * page):  # leave the header page, garble later pages
        data[start:start + page] = os.urandom(page)
    path.write_bytes(bytes(data))


def test_corrupt_gallery_file_is_one_clear_error(tmp_path, capsys):
    path = tmp_path / "g.db"
    with Gallery(path, MODEL) as g:
        for i in range(30):
            g.enroll(f"p{i}", unit_rows(50, i), np.full(50, 112.0))
        g.purge_wal()
    _corrupt(path)
    try:
        g = Gallery(path, None)
    except GalleryError as exc:  # refused at open: fine, as long as it says so
        assert "cannot be" in str(exc)
    else:
        with g:
            problems = g.check()  # reports, never raises
            assert problems
            with pytest.raises(GalleryError, match="corrupt|cannot"):
                g.identities()
    for action in ("list", "check"):
        code = cli.main(["gallery", action, "--gallery", str(path)])
        captured = capsys.readouterr()
        assert code == 1 and "Traceback" not in captured.err
        if action == "list":
            assert captured.err.count("\n") == 1 and "corrupt" in captured.err or "cannot" in captured.err


def _create(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        Gallery(path, MODEL).close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.skipif(sys.platform == "win32", reason="fork start method")
def test_processes_creating_the_same_gallery_all_succeed(tmp_path):
    ctx = multiprocessing.get_context("fork")
    outcomes = []
    for round_ in range(8):
        path = str(tmp_path / f"g{round_}.db")
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_create, args=(path, barrier, results)) for _ in range(6)]
        for p in procs:
            p.start()
        outcomes += [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        with Gallery(path, MODEL) as g:
            assert g.check() == [] and [e.action for e in g.audit_log()] == ["create"]
    assert outcomes == ["ok"] * 48, [o for o in outcomes if o != "ok"][:3]


def _corrupt_mp4(path: Path, n: int = 60) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 120))
    for i in range(n):
        frame = np.full((120, 160, 3), 4 * i, np.uint8)
        cv2.circle(frame, (20 + 2 * i, 60), 15, (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    data = path.read_bytes()
    a, b = int(len(data) * 0.1), int(len(data) * 0.4)
    path.write_bytes(data[:a] + bytes(b - a) + data[b:])  # zeroed frames: the decoder gives up mid-file


def test_corrupt_video_is_reported_not_a_short_success(tmp_path):
    path = tmp_path / "bad.mp4"
    _corrupt_mp4(path)
    with open_source(path) as src:
        assert src.frame_count == 60
        with pytest.raises(VideoDecodeError, match=r"after frame \d+ of the 60 the file states"):
            for _ in src:
                pass

    class NoFaces:  # the pipeline's interface, finding no faces: only the source matters here
        gallery = bundle = None

        def detect(self, frame):
            return []

        faces_from = embed = match = probe_resolution = detect

    events = tmp_path / "e.jsonl"
    with pytest.raises(VideoDecodeError) as err:
        VideoPipeline(NoFaces()).run(path, events=events, progress=False)
    assert 0 < err.value.summary["frames_read"] < 60 and "corrupt" in err.value.summary["error"]
    kinds = [line.split('"type":"')[1].split('"')[0] for line in events.read_text().splitlines()]
    assert kinds == ["start", "error", "end"]


def test_cli_run_on_a_corrupt_video_exits_1(tmp_path):
    from crres_sdk import BundleError
    from crres_sdk.recognizer import find_model_bundle

    try:
        find_model_bundle("default")
    except BundleError as exc:
        pytest.skip(f"no default model bundle: {exc}")
    path = tmp_path / "bad.mp4"
    _corrupt_mp4(path)
    r = subprocess.run([sys.executable, "-m", "crres_sdk.cli", "run", "--backend", "onnxruntime", "--gallery",
                        str(tmp_path / "g.db"), "--source", str(path), "--no-progress"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1 and "corrupt or truncated video" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
