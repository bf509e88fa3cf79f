"""export/remedies.py's one remedy loop on a fake quantiser, and every target's plan naming known steps."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from export import remedies
from export.build_engine import STEPS, plan
from export.state import BuildState
from export.targets import TARGETS


class FakeQuantiser(remedies.Quantiser):
    key, file_key, backend = "fake", "fake/int8", "onnxruntime"

    def __init__(self, args, st, remedies_in_order):
        super().__init__(args, st)
        self.plan, self.rejects, self.closed, self.shipped = remedies_in_order, [], False, None

    def attempts(self, tried):
        for r in self.plan:
            yield remedies.Attempt(r, method="minmax")

    def quantize(self, k, att, inputs):
        return self.st.out / f"candidate{k}", {"k": k}

    def rejected(self, k, path):
        self.rejects.append(k)

    def close(self):
        self.closed = True

    def ship(self, path, info, att):
        self.shipped = (path.name, att.remedy)


def _search(tmp_path, monkeypatch, verdicts):
    verdicts = iter(verdicts)
    monkeypatch.setattr(remedies, "evaluate", lambda args, st, path, backend, key, att: {
        "remedy": att.remedy, "passed": next(verdicts), "report": {"bands": {}}, "accuracy": {"set": "x"}})
    st = BuildState(out=tmp_path, target=TARGETS["onnx"], inputs=[], bands={}, lfw_root=None,
                    calib=SimpleNamespace(inputs=None))
    q = FakeQuantiser(SimpleNamespace(), st, ["none", "a", "b", "c"])
    return st, q


def test_search_ships_the_first_candidate_that_is_not_failed(tmp_path, monkeypatch):
    st, q = _search(tmp_path, monkeypatch, [False, False, None])
    remedies.search(q.args, st, q)
    entry = st.parity["fake"]
    assert [a["remedy"] for a in entry["attempts"]] == ["none", "a", "b"]
    assert entry["remedy_used"] == "b" and entry["passed"] is None and entry["file"] == "fake/int8"
    assert q.rejects == [0, 1] and q.closed and q.shipped == ("candidate2", "b") and st.quant["fake"] == {"k": 2}


def test_search_that_never_passes_writes_the_report_and_raises(tmp_path, monkeypatch):
    st, q = _search(tmp_path, monkeypatch, [False] * 4)
    with pytest.raises(remedies.ParityError, match="fake after 4 attempt"):
        remedies.search(q.args, st, q)
    assert q.closed and q.shipped is None and "fake" not in st.quant
    report = json.loads((tmp_path / "parity_report.json").read_text())
    assert report["passed"] is False and len(report["parity"]["fake"]["attempts"]) == 4


def test_every_target_plans_known_steps_in_table_order():
    for name, spec in TARGETS.items():
        steps = plan(name)
        assert [s for s, _, _ in steps] == list(spec["steps"])
        assert all(fn is STEPS[s] and kwargs == spec["args"].get(s, {}) for s, fn, kwargs in steps)
        assert set(spec["args"]) <= set(spec["steps"])
