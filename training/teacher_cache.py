"""Embeddings of every training crop by the frozen pretrained network, computed once per dataset.

Fine-tuning a strong HR network (issue 17) uses it twice: its HR embeddings (and those of the flipped crops,
since training flips on the fly) are the targets of the frozen-HR-branch methods, so a step costs no teacher
forward; and their per-class means initialise the margin head, so the first steps do not push random-head
gradients into a converged backbone. The cache is keyed by the network's weights and the dataset's file list
and stored as a weights-only tensor file.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from training.data import normalize


def _key(model: nn.Module, dataset: Dataset) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    samples = getattr(dataset, "samples", None)
    h.update(repr(samples if samples is not None else len(dataset)).encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def embed_dataset(model: nn.Module, dataset: Dataset, batch_size: int = 128, workers: int = 0,
                  progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(embeddings, embeddings of the flipped crops, labels) in dataset order, model in eval mode."""
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    embs, flips, labels = [], [], []
    t0 = time.time()
    for i, (images, y) in enumerate(loader):
        x = normalize(images).contiguous(memory_format=torch.channels_last)
        embs.append(model(x).float())
        flips.append(model(x.flip(-1)).float())
        labels.append(y)
        if progress and (i % 20 == 0):
            done = min((i + 1) * batch_size, len(dataset))
            print(f"[teacher cache] {done}/{len(dataset)} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    model.train(was_training)
    return torch.cat(embs), torch.cat(flips), torch.cat(labels)


def teacher_embeddings(model: nn.Module, dataset: Dataset, cache_dir: str | os.PathLike,
                       progress: bool = True) -> dict[str, torch.Tensor]:
    """Load or compute ``{"hr", "hr_flip", "labels"}`` for ``dataset`` under ``model``'s current weights."""
    path = Path(cache_dir) / f"teacher_{_key(model, dataset)}.pt"
    if path.is_file():
        cache = torch.load(path, map_location="cpu", weights_only=True)
        if cache["hr"].shape[0] == len(dataset):
            return cache
    hr, hr_flip, labels = embed_dataset(model, dataset, progress=progress)
    cache = {"hr": hr, "hr_flip": hr_flip, "labels": labels}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(cache, tmp)
    os.replace(tmp, path)
    return cache


def class_means(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, D) mean of the L2-normalised embeddings of each class (a class with no sample gets zeros)."""
    unit = nn.functional.normalize(embeddings.float(), dim=1)
    sums = torch.zeros(num_classes, unit.shape[1]).index_add_(0, labels.long(), unit)
    counts = torch.bincount(labels.long(), minlength=num_classes).clamp(min=1).unsqueeze(1)
    return sums / counts


class IndexedDataset(Dataset):
    """Any dataset's ``(image, label)`` as ``(image, label, index)``, so a step can look up cached rows."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        image, label = self.dataset[i]
        return image, label, i
