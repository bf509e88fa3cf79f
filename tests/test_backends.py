"""OpenVINO sessions from several threads: each thread's first inference is serialised process-wide, the
constructor warms the compiled model up on its own thread, and many threads calling a fresh session first at once
neither hang nor mix up results (checked in a subprocess with a timeout, so a hang fails the test)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from crres_sdk import backends
from crres_sdk.backends import OpenVinoSession, available_backends

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
needs_openvino = pytest.mark.skipif("openvino" not in available_backends(), reason="OpenVINO is not installed")


class _SlowRequest:
    """A stand-in infer request that records how many inferences run at once."""

    def __init__(self, log: dict) -> None:
        self.log = log

    def infer(self, feeds: dict) -> dict:
        with self.log["lock"]:
            self.log["now"] += 1
            self.log["max"] = max(self.log["max"], self.log["now"])
        time.sleep(0.05)
        with self.log["lock"]:
            self.log["now"] -= 1
        return {"out": feeds["x"] * 2}


class _FakeCompiled:
    outputs = ["out"]

    def __init__(self, log: dict, fail_first: bool = False) -> None:
        self.log, self.fail_first, self.made = log, fail_first, 0

    def create_infer_request(self) -> _SlowRequest:
        self.made += 1
        if self.fail_first and self.made == 1:
            req = _SlowRequest(self.log)
            req.infer = lambda feeds: (_ for _ in ()).throw(RuntimeError("first call failed"))  # type: ignore
            return req
        return _SlowRequest(self.log)


def _fake_session(fail_first: bool = False) -> tuple[OpenVinoSession, dict]:
    log = {"lock": threading.Lock(), "now": 0, "max": 0}
    s = OpenVinoSession.__new__(OpenVinoSession)
    s._compiled = _FakeCompiled(log, fail_first)
    s._local = threading.local()
    return s, log


def test_first_calls_of_many_threads_never_overlap_later_calls_do():
    s, log = _fake_session()
    n = 6
    barrier = threading.Barrier(n)
    out: dict[int, np.ndarray] = {}

    def first(i: int) -> None:
        barrier.wait()
        out[i] = s.run({"x": np.full(3, i)})[0]

    threads = [threading.Thread(target=first, args=(i,)) for i in range(n)]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    assert log["max"] == 1  # six first calls, one at a time
    assert all(np.array_equal(out[i], np.full(3, 2 * i)) for i in range(n))
    assert s._compiled.made == n  # one infer request per thread

    # each thread's later calls take no lock: they overlap
    log["max"] = 0
    s2, log2 = _fake_session()
    s2.run({"x": np.zeros(1)})  # this thread's first call

    barrier2 = threading.Barrier(2)

    def again() -> None:
        s2.run({"x": np.zeros(1)})  # first call of this thread (serialised), then a free one
        barrier2.wait()
        s2.run({"x": np.zeros(1)})

    t = threading.Thread(target=again)
    t.start()
    barrier2.wait()
    s2.run({"x": np.zeros(1)})
    t.join(10)
    assert log2["max"] == 2


def test_a_failed_first_call_stays_a_first_call():
    s, _ = _fake_session(fail_first=True)
    with pytest.raises(RuntimeError, match="first call failed"):
        s.run({"x": np.zeros(2)})
    assert getattr(s._local, "request", None) is None
    assert np.array_equal(s.run({"x": np.ones(2)})[0], np.full(2, 2.0))
    assert s._local.request is not None


@needs_openvino
@pytest.mark.parametrize("model", ["mtcnn/pnet.onnx", "mtcnn/onet.onnx", "crres_default/model.int8.onnx"])
def test_constructor_warms_up_on_its_own_thread(model):
    s = backends.open_model(MODELS / model, "openvino", 1)
    assert s.warmed_up
    assert s._local.request is not None  # the constructing thread's infer request has run once


_CONCURRENT = textwrap.dedent("""
    import sys, threading
    import numpy as np
    from crres_sdk.backends import open_model

    path, n = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    shapes = [(1, 3, 24 + 8 * i, 32 + 4 * i) for i in range(n)]
    feeds = [rng.standard_normal(s).astype(np.float32) for s in shapes]

    def at_once(work):
        # work(i, barrier) on n threads, i = 0 .. n-1; fails with every exception they raised
        barrier, errors = threading.Barrier(n), []

        def run(i):
            try:
                work(i, barrier)
            except BaseException as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert not errors, errors

    def check(session, label):
        name = session.input_names[0]
        got = {}

        def first(i, barrier):
            barrier.wait()
            got[i] = session.run({name: feeds[i]})

        at_once(first)
        for i in range(n):  # the same as one thread's results
            want = session.run({name: feeds[i]})
            assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(got[i], want)), (label, i)
        print(label, "ok", flush=True)

    # a session compiled on the main thread, first called by n other threads at once
    check(open_model(path, "openvino", 1), "main-compiled")
    # a session compiled on a worker thread that then ends, first called by n other threads at once
    box = []
    t = threading.Thread(target=lambda: box.append(open_model(path, "openvino", 1)))
    t.start(); t.join()
    check(box[0], "worker-compiled")
    # n threads each constructing its own session and calling it at once
    def own(i, barrier):
        s = open_model(path, "openvino", 1)
        barrier.wait()
        s.run({s.input_names[0]: feeds[i]})

    at_once(own)
    print("own-sessions ok", flush=True)
""")


@needs_openvino
def test_fresh_session_first_called_by_many_threads_at_once_does_not_hang():
    try:
        done = subprocess.run([sys.executable, "-c", _CONCURRENT, str(MODELS / "mtcnn" / "pnet.onnx"), "6"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"OpenVINO sessions first called from 6 threads at once hung (output: {exc.stdout!r})")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:3] == ["main-compiled ok", "worker-compiled ok", "own-sessions ok"]
