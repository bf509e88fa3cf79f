"""Cross-resolution evaluation harness (issue 5): datasets, verification and identification protocols,
model runners shared by ONNX/OpenVINO sessions and torch checkpoints, and paper-style reports.

Entry point: ``python -m training.evaluate`` (see training/evaluate.py).
"""

from training.evaluation.verification import (
                                              best_threshold,
                                              cosine_similarity,
                                              evaluate_scores,
                                              kfold_accuracy,
                                              roc_curve,
                                              tar_at_far,
)

__all__ = ["best_threshold", "cosine_similarity", "evaluate_scores", "kfold_accuracy", "roc_curve", "tar_at_far"]
