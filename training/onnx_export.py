"""torch -> ONNX: the one caller of ``torch.onnx.export`` in the project's code (issue 22 item 1).

The TorchScript exporter (``dynamo=False``) at opset 17: deprecated in torch 2.x but exact for the plain CNNs here,
and it writes the opset asked for (the dynamo exporter builds opset 18 and may silently stay there, DESIGN 8).
It lives in ``training/`` because training (the SR and resolution-estimator bundles, the evaluation harness) and
export both need it, and export may import training, never the reverse.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

OPSET = 17
#: The face-embedding model's input and output names (the SDK's model bundle contract).
EMBEDDING_INPUT, EMBEDDING_OUTPUT = "image", "embedding"


def export_onnx(model: torch.nn.Module, sample: tuple[torch.Tensor, ...], path: str | os.PathLike, *,
                input_names: Sequence[str], output_names: Sequence[str],
                dynamic_axes: Mapping[str, Mapping[int, str]], opset: int = OPSET) -> Path:
    """Trace ``model`` on ``sample`` into ``path`` (warnings of the deprecated exporter silenced). The model's
    train/eval mode is the caller's."""
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, sample, str(path), dynamo=False, opset_version=opset,
                          input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()}, do_constant_folding=True)
    return path


class _EmbeddingOnly(torch.nn.Module):
    """The backbone alone, its forward argument named like the ONNX input."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)


def export_embedding_onnx(model: torch.nn.Module, input_size: int, path: str | os.PathLike,
                          opset: int = OPSET) -> Path:
    """A face-embedding backbone -> FP32 ONNX, input ``image`` (N x 3 x size x size), output ``embedding``,
    dynamic batch; the model is put in eval mode."""
    dummy = torch.zeros(2, 3, input_size, input_size)
    return export_onnx(_EmbeddingOnly(model).eval(), (dummy,), path, input_names=[EMBEDDING_INPUT],
                       output_names=[EMBEDDING_OUTPUT], opset=opset,
                       dynamic_axes={EMBEDDING_INPUT: {0: "batch"}, EMBEDDING_OUTPUT: {0: "batch"}})
