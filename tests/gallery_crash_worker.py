"""Helper process for tests/test_gallery.py: writes to a gallery from another process.

    python tests/gallery_crash_worker.py loop PATH DIM K [PAUSE]
                                                            enrol p<n>, p<n+1>, ... (n = identities already
                                                            there) with K templates each, forever;
                                                            prints "begin i" before and "done i" after each.
                                                            With PAUSE = m, the enrolment after m completed ones
                                                            prints "spilled i" the moment uncommitted pages of it
                                                            are in the WAL file, then stops there (inside its
                                                            transaction) until it is killed
    python tests/gallery_crash_worker.py serve PATH DIM      one command per stdin line, one reply line each:
        enroll NAME SEED   -> "ok N"        remove NAME -> "ok N"
        names              -> JSON list     search SEED -> JSON [identity, score] of the best match or null
        quit

Template vectors come from ``vectors(seed, n, dim)`` so the test process can rebuild them.
"""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

import numpy as np

from crres_sdk.gallery import Gallery, ModelKey

MODEL_NAME, MODEL_VERSION = "crash-test-model", "1"


def model(dim: int) -> ModelKey:
    return ModelKey(MODEL_NAME, MODEL_VERSION, dim)


def vectors(seed: int, n: int, dim: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def uncommitted_wal_frames(wal: Path) -> int:
    """Frames of the current WAL generation written after its last commit frame (SQLite WAL file format)."""
    data = wal.read_bytes() if wal.exists() else b""
    if len(data) < 32:
        return 0
    page, salt = struct.unpack(">I", data[8:12])[0], data[16:24]
    after_commit, off = 0, 32
    while off + 24 + page <= len(data) and data[off + 8:off + 16] == salt:
        after_commit = 0 if struct.unpack(">I", data[off + 4:off + 8])[0] else after_commit + 1
        off += 24 + page
    return after_commit


def loop(path: str, dim: int, k: int, pause_after: int | None = None) -> None:
    resolutions = np.resize([112.0, 56.0, 28.0, 14.0, 7.0], k)
    wal = Path(f"{path}-wal")
    with Gallery(path, model(dim)) as g:
        i = len(g)  # continue after the enrolments of earlier (killed) runs
        done = 0
        state = {"armed": False, "last": 0.0}

        def stop_once_spilled() -> int:
            # SQLite calls this every 1000 VM steps of the writer, inside the enrolment's transaction. Once
            # pages of it are in the WAL file (the page cache spilled), say so and wait there to be killed.
            now = time.monotonic()
            if state["armed"] and now - state["last"] > 0.002:
                state["last"] = now
                if uncommitted_wal_frames(wal) > 0:
                    print(f"spilled {i}", flush=True)
                    while True:
                        time.sleep(3600)
            return 0

        if pause_after is not None:
            g._writer.set_progress_handler(stop_once_spilled, 1000)
        while True:
            templates = vectors(i, k, dim)
            print(f"begin {i}", flush=True)
            state["armed"] = pause_after is not None and done >= pause_after
            g.enroll(f"p{i}", templates, resolutions, metadata={"i": i})
            state["armed"] = False
            print(f"done {i}", flush=True)
            i += 1
            done += 1


def serve(path: str, dim: int) -> None:
    with Gallery(path, model(dim)) as g:
        print("ready", flush=True)
        for line in sys.stdin:
            cmd, *args = line.split()
            if cmd == "quit":
                break
            if cmd == "enroll":
                reply = f"ok {g.enroll(args[0], vectors(int(args[1]), 2, dim), [112.0, 14.0])}"
            elif cmd == "remove":
                reply = f"ok {g.remove(args[0])}"
            elif cmd == "names":
                reply = json.dumps(list(g))
            elif cmd == "search":
                found = g.search(vectors(int(args[0]), 1, dim), [112.0], top_k=1)[0]
                reply = json.dumps([found[0].identity, found[0].score] if found else None)
            else:
                reply = f"error unknown command {cmd!r}"
            print(reply, flush=True)


if __name__ == "__main__":
    mode, db, d = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "loop":
        loop(db, d, int(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else None)
    elif mode == "serve":
        serve(db, d)
    else:
        sys.exit(f"unknown mode {mode!r}")
