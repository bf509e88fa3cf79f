"""Helper process for tests/test_gallery.py: writes to a gallery from another process.

    python tests/gallery_crash_worker.py loop PATH DIM K     enrol p<n>, p<n+1>, ... (n = identities already
                                                            there) with K templates each, forever;
                                                            prints "begin i" before and "done i" after each
    python tests/gallery_crash_worker.py serve PATH DIM      one command per stdin line, one reply line each:
        enroll NAME SEED   -> "ok N"        remove NAME -> "ok N"
        names              -> JSON list     search SEED -> JSON [identity, score] of the best match or null
        quit

Template vectors come from ``vectors(seed, n, dim)`` so the test process can rebuild them.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from crres_sdk.gallery import Gallery, ModelKey

MODEL_NAME, MODEL_VERSION = "crash-test-model", "1"


def model(dim: int) -> ModelKey:
    return ModelKey(MODEL_NAME, MODEL_VERSION, dim)


def vectors(seed: int, n: int, dim: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def loop(path: str, dim: int, k: int) -> None:
    resolutions = np.resize([112.0, 56.0, 28.0, 14.0, 7.0], k)
    with Gallery(path, model(dim)) as g:
        i = len(g)  # continue after the enrolments of earlier (killed) runs
        while True:
            templates = vectors(i, k, dim)
            print(f"begin {i}", flush=True)
            g.enroll(f"p{i}", templates, resolutions, metadata={"i": i})
            print(f"done {i}", flush=True)
            i += 1


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
        loop(db, d, int(sys.argv[4]))
    elif mode == "serve":
        serve(db, d)
    else:
        sys.exit(f"unknown mode {mode!r}")
