"""One parametrised test over every registered model (timm style), plus registry checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from training.models import get_model, list_models, register_model

torch.set_num_threads(2)

# IResNet-100 gets a reduced check (forward, stages, backward, eval; no ONNX export) to keep this
# file near a minute on 2 cores: its blocks are the IResNet-18/34/50 blocks, which are exported.
BIG = {"iresnet100"}


def test_registry_lists_the_issue_models():
    expected = {"iresnet18", "iresnet34", "iresnet50", "iresnet100", "mobilefacenet",
                "lai_resnet20", "waveresnet18", "waveresnet50"}
    assert expected <= set(list_models())


def test_unknown_model_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown model"):
        get_model("no_such_net")


def test_register_model_rejects_duplicates_and_models_without_metadata(monkeypatch):
    from training.models import registry

    # Work on a copy so the test-only entry never leaks into list_models() elsewhere.
    monkeypatch.setattr(registry, "_MODEL_FACTORIES", dict(registry._MODEL_FACTORIES))
    with pytest.raises(ValueError, match="already registered"):
        @register_model
        def iresnet18():  # noqa: F811 - the clash is the point
            return torch.nn.Identity()

    @register_model
    def _test_only_no_metadata():
        return torch.nn.Identity()

    with pytest.raises(TypeError, match="input_size"):
        get_model("_test_only_no_metadata")


@pytest.mark.parametrize("name", list_models())
def test_model(name, tmp_path):
    torch.manual_seed(0)
    model = get_model(name, num_features=64)
    size = model.input_size
    assert model.embedding_dim == 64

    # Train-mode forward/backward on batch 2 (BatchNorm needs more than one sample).
    model.train()
    x = torch.randn(2, 3, size, size)
    emb, stages = model(x, return_stages=True)
    assert emb.shape == (2, 64)
    assert len(stages) == 4
    # Stage k is the input downsampled by 2**k (k=1..4) - the contract the wavelet loss relies on - unless
    # the model declares other sizes (dlib_resnet works on its own 150 chip).
    expected = getattr(model, "stage_sizes", [size // 2**k for k in range(1, 5)])
    for k, (s, side) in enumerate(zip(stages, expected), start=1):
        assert s.shape[0] == 2 and s.shape[-2:] == (side, side), (k, s.shape)
    emb.square().mean().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for _, p in trainable)
    assert any(p.grad.abs().sum() > 0 for _, p in trainable)

    # Eval mode: plain forward returns the embedding alone, and matches the stage path.
    model.eval()
    with torch.no_grad():
        e1 = model(x)
        e2, _ = model(x, return_stages=True)
    assert torch.equal(e1, e2)

    if name in BIG:
        return
    # ONNX export with a dynamic batch axis (the path export/ will take).
    onnx = pytest.importorskip("onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # optimize=False halves the export time; the graph is still checked and run below.
        program = torch.onnx.export(model, (x,), dynamo=True, verbose=False, optimize=False,
                                    dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    path = tmp_path / f"{name}.onnx"
    program.save(str(path))
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value"), batch_dim
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x3 = torch.randn(3, 3, size, size)  # a batch size the export never saw
    with torch.no_grad():
        ref = model(x3).numpy()
    (out,) = sess.run(None, {sess.get_inputs()[0].name: x3.numpy()})
    assert out.shape == (3, 64)
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3 * float(np.abs(ref).max()))


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet", "lai_resnet20"])
def test_input_size_and_embedding_options(name):
    model = get_model(name, input_size=128, num_features=32).eval()
    assert (model.input_size, model.embedding_dim) == (128, 32)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 128, 128)).shape == (1, 32)
    with pytest.raises(ValueError):
        get_model(name, input_size=100)


def test_any_iresnet_depth_has_a_wavelet_variant():
    model = get_model("iresnet34", wavelet=True, num_features=16)
    assert model.wavelet and model.embedding_dim == 16


def test_waveresnet_differs_from_iresnet_only_in_downsampling():
    """Same parameters (Lu & Ebrahimi: student has "the same amount of parameters"), different op."""
    from training.wavelet import HaarLL

    teacher, student = get_model("iresnet18"), get_model("waveresnet18")
    assert [p.shape for p in teacher.parameters()] == [p.shape for p in student.parameters()]
    assert not any(isinstance(m, HaarLL) for m in teacher.modules())
    # One f_LL in each of the 4 strided residual branches and 4 shortcuts.
    assert sum(isinstance(m, HaarLL) for m in student.modules()) == 8
    strided = [m for m in student.modules() if isinstance(m, torch.nn.Conv2d) and m.stride != (1, 1)]
    assert not strided
