"""Cross-resolution evaluation harness: how well a model recognises faces at each resolution.

* data: ``datasets.py`` (LFW View-2, InsightFace ``.bin`` files, the btm-stm sizes);
* model runners, one interface for ONNX/OpenVINO files, bundles and torch checkpoints: ``embedder.py``;
* protocols and scores: ``protocols.py`` (HR, CR/ER, btm-stm, Lai & Lam), ``verification.py`` (k-fold accuracy,
  ROC), ``far_threshold.py`` (the threshold at a false-accept rate), ``identification.py`` (closed set),
  ``open_set.py`` and ``end_to_end.py`` (through the SDK), ``mitm.py`` and ``mitm_verification.py``
  (meet-in-the-middle scoring);
* output: ``report.py`` (paper-style tables and plots), ``progress.py``.

Entry point: ``python -m evaluation`` (evaluation/cli.py).
"""

from evaluation.verification import (
    best_threshold,
    cosine_similarity,
    evaluate_scores,
    kfold_accuracy,
    roc_curve,
    tar_at_far,
)

__all__ = ["best_threshold", "cosine_similarity", "evaluate_scores", "kfold_accuracy", "roc_curve", "tar_at_far"]
