"""crres training (PyTorch): train, evaluate and hand checkpoints to export/. The runtime SDK never imports it.

One file or folder per concern, after InsightFace's ``recognition/arcface_torch``:

* what a network is: ``models/`` (backbones, a timm-style registry), ``heads.py`` (margin heads), ``losses.py``,
  ``degradations.py`` (``F_up(F_down,r)`` and camera effects, batched on the device), ``wavelet.py``;
* how a step trains it: ``methods/`` (one file per paper's method, a registry); what to train: ``recipes/``;
* the run: ``data.py``, ``train.py`` (``python -m training.train``), ``checkpoint.py`` (the checkpoint format),
  ``onnx_export.py`` (torch -> ONNX), ``pretrained.py`` and ``teacher_cache.py`` (a pretrained start);
* measuring it: ``evaluation/`` (``python -m evaluation``), ``experiments/`` (the runs behind docs/);
* the other networks the SDK ships or uses: ``resolution_estimator.py``, ``sr.py``; ``prepare.py`` detects and
  aligns raw photos into a training folder.
"""

from training.models import get_model, list_models, register_model

__all__ = ["get_model", "list_models", "register_model"]
