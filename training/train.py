"""Train a recipe: ``python -m training.train --recipe NAME --data PATH [options]``.

One process (CPU or one GPU) or many under ``torchrun --nproc_per_node=N -m training.train ...``
(DDP; gloo on CPU, nccl on CUDA). Layout after arcface_torch's ``train_v2.py``: the recipe
(``training/recipes/``) says what to train, this file how.

* Data: ``training.data.build_dataset`` (image folder or InsightFace RecordIO), items are RGB in
  [0, 1]; flips, colour jitter and all degradations run **on the training device in batch**
  (``training.degradations``), then ``training.data.normalize`` gives the model input.
* Schedule: the recipe's milestones are fractions of the planned run ``epochs x steps/epoch``;
  the learning rate is a pure function of the global step (so resume cannot drift).
  ``--max-steps`` stops early without changing the schedule (smoke tests, resume tests).
* Mixed precision: bf16 autocast for the backbone on CUDA; heads and losses in fp32. On CPU the backbone runs
  channels_last (NHWC), the layout oneDNN's convolutions are fastest in.
* NaN/inf guard: a step whose loss or gradient norm is not finite is skipped (all ranks agree;
  the weights, optimizer state and BatchNorm running statistics stay as they were) and counted; ``--max-bad-steps`` consecutive bad steps abort the run.
* Checkpoints: ``OUT/last.pt`` after every epoch and at the end (model, head, optimizer, step,
  every rank's RNG states), ``OUT/final.pt`` at the end (what export/ reads). Both are plain
  dicts of tensors and primitives, written and read by ``training.checkpoint`` (``weights_only=True``).
* Logs: ``OUT/train_log.csv`` always, TensorBoard under ``OUT/tb`` when
  ``torch.utils.tensorboard`` imports; a tqdm bar (or a plain line) on rank 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader

from training import degradations as D
from training.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    NORMALIZATION_KEY,
    head_from_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    save_atomic,
)
from training.data import NORMALIZATION, build_dataset, normalize, source_identity
from training.heads import get_head
from training.methods import get_method
from training.methods.sizes import sample_sizes
from training.models import get_model
from training.pretrained import initialise
from training.teacher_cache import IndexedDataset, class_means, teacher_embeddings
from training.recipes import Recipe, get_recipe, list_recipes

#: Cached embeddings of the pretrained network per dataset (keyed by weights and file list; shared by runs).
TEACHER_CACHE_DIR = Path(os.environ.get("CRRES_CACHE", Path.home() / ".cache" / "crres")) / "teacher"


# --- distributed helpers ----------------------------------------------------------------------------

def _dist_on() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _dist_on() else 0


def _world() -> int:
    return dist.get_world_size() if _dist_on() else 1


# --- data order ---------------------------------------------------------------------------------------

class EpochBatchSampler:
    """Per-epoch permutation from ``(seed, epoch)``; rank r takes every world-th sample of it.

    Drops the tail so every rank runs the same number of full batches; ``set_epoch(e, skip)``
    skips the first ``skip`` batches (a resumed epoch continues where it stopped).
    """

    def __init__(self, n: int, batch_per_rank: int, rank: int, world: int, seed: int) -> None:
        self.n, self.batch, self.rank, self.world, self.seed = n, batch_per_rank, rank, world, seed
        self.num_batches = n // (batch_per_rank * world)
        if self.num_batches == 0:
            raise ValueError(f"the dataset ({n} images) is smaller than one global batch "
                             f"({batch_per_rank * world}); lower --batch-size")
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        return self.num_batches - self.skip

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)[: self.num_batches * self.batch * self.world]
        mine = perm[self.rank::self.world].tolist()
        for b in range(self.skip, self.num_batches):
            yield mine[b * self.batch:(b + 1) * self.batch]


def lr_factor(step: int, total_steps: int, milestones: list[float], gamma: float,
              warmup_fraction: float = 0.0) -> float:
    """Multi-step decay at ``round(f * total_steps)`` for each milestone f, after a linear warm-up."""
    warm = int(round(warmup_fraction * total_steps))
    if step < warm:
        return (step + 1) / warm
    passed = sum(step >= int(round(f * total_steps)) for f in milestones)
    return gamma ** passed


# --- the training step ----------------------------------------------------------------------------------

class TrainStep(nn.Module):
    """Backbone + head and the recipe's method: ``forward(x01, labels, gen, index) -> {"loss": ..., parts}``.

    One module so DDP sees every trainable parameter in one forward. ``gen`` is the CPU
    generator that drives augmentation and degradation sampling (checkpointed, so resumed
    runs draw the same degradations). The loss itself is the method's (``training.methods``); this
    class gives it the networks, the augmentation and the degradations.
    """

    def __init__(self, recipe: Recipe, model: nn.Module, head: nn.Module,
                 teacher: tuple[nn.Module, nn.Module] | None = None,
                 teacher_cache: dict[str, torch.Tensor] | None = None,
                 teacher_head: nn.Module | None = None) -> None:
        super().__init__()
        self.recipe, self.model, self.head = recipe, model, head
        self.method = get_method(recipe.method)
        given = {"needs_teacher": (teacher, "a teacher checkpoint (--teacher PATH)"),
                 "needs_cache": (teacher_cache, "the pretrained network's cached embeddings (a recipe with init=...)"),
                 "needs_teacher_head": (teacher_head, "the frozen teacher head")}
        for need, (value, what) in given.items():
            if getattr(self.method, need) and value is None:
                raise ValueError(f"the {recipe.method} method needs {what}")
        # Plain attributes (a tuple, a dict, a one-item list): never registered, trained, saved or seen by DDP.
        self.teacher = teacher
        self.cache = teacher_cache
        self._teacher_head = [teacher_head] if teacher_head is not None else []
        self.autocast = False

    @property
    def teacher_head(self) -> nn.Module | None:
        return self._teacher_head[0] if self._teacher_head else None

    def embed(self, x01: torch.Tensor, net: nn.Module | None = None, stages: bool = False):
        net = self.model if net is None else net
        x = normalize(x01)
        if not x.is_cuda:  # oneDNN's faster NHWC convolutions on CPU, same arithmetic
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast and x01.is_cuda):
            out = net(x, return_stages=stages) if stages else net(x)
        if stages:
            return out[0].float(), [s.float() for s in out[1]]
        return out.float()

    def augment(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(augmented batch, which samples were flipped)."""
        r = self.recipe
        n = x.shape[0]
        mask = torch.zeros(n, dtype=torch.bool, device=x.device)
        if r.flip:
            mask = (torch.rand(n, generator=gen) < 0.5).to(x.device)
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        if r.color_jitter > 0:
            c = r.color_jitter
            bright = (1 + c * (2 * torch.rand(n, generator=gen) - 1)).to(x)[:, None, None, None]
            sat = (1 + c * (2 * torch.rand(n, generator=gen) - 1)).to(x)[:, None, None, None]
            x = x * bright
            gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
            x = (gray + sat * (x - gray)).clamp(0, 1)
        return x, mask

    def lr_sizes(self, n: int, hr: int, gen: torch.Generator) -> torch.Tensor:
        return sample_sizes(self.recipe.sampler, n, hr, self.recipe.sampler_kwargs, gen)

    def degrade(self, x: torch.Tensor, sizes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Each sample at its resolution; with ``camera_p`` Lu & Ebrahimi's blur/noise/JPEG first."""
        if self.recipe.camera_p > 0:
            return D.lu_degradation(x, sizes=sizes, p=self.recipe.camera_p, generator=gen)[0]
        return D.degrade_batch(x, sizes)

    def forward(self, x01: torch.Tensor, labels: torch.Tensor, gen: torch.Generator,
                index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.method.needs_index and index is None:
            raise ValueError(f"the {self.method.name} method needs the batch's dataset indices")
        with torch.no_grad():
            x, flipped = self.augment(x01, gen)
        return self.method.step(self, x, flipped, labels, gen, index)


# --- RNG state (primitives + tensors only, for weights_only checkpoints) ----------------------------

def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "gen": gen.get_state(),
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
    }


def _set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    gen.set_state(state["gen"])
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))


def _all_gather_rng(gen: torch.Generator) -> list[dict[str, Any]]:
    mine = _rng_state(gen)
    if not _dist_on():
        return [mine]
    out: list[Any] = [None] * _world()
    dist.all_gather_object(out, mine)  # our own objects between our own processes
    return out


# --- logging ----------------------------------------------------------------------------------------------

class CsvLog:
    """A CSV log whose header is the first row's keys; appending (resume) reuses the existing header."""

    def __init__(self, path: Path, append: bool) -> None:
        self.path = path
        if not append and path.exists():
            path.unlink()  # a fresh run starts a fresh log
        self.fields: list[str] | None = None

    def log(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            if self.path.exists() and self.path.stat().st_size > 0:
                with open(self.path, newline="") as f:
                    self.fields = next(csv.reader(f))
            else:
                self.fields = list(row)
                with open(self.path, "w", newline="") as f:
                    csv.writer(f).writerow(self.fields)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)


class Logger:
    """CSV always (appending on resume), TensorBoard when importable, progress on rank 0."""

    def __init__(self, out: Path, enabled: bool, progress: bool, append: bool) -> None:
        self.enabled, self.progress = enabled, progress
        self.path = out / "train_log.csv"
        self.csv = CsvLog(self.path, append) if enabled else None
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(out / "tb"))
            except Exception:  # tensorboard not installed: CSV only
                self.tb = None

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.csv.log(row)
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("time", "epoch", "step") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}", v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
        return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, file=sys.stderr)
    except ImportError:
        return None


# --- the run ------------------------------------------------------------------------------------------------

def keep_freed_heap() -> bool:
    """Keep freed memory in this process's heap instead of handing it back to the kernel (glibc only).

    A CPU step allocates and frees the same few GB of activations every step. glibc serves each block over its
    mmap threshold with a fresh mmap and unmaps it on free, so every step page-faults and zeroes that memory
    again, in the kernel. ``mallopt(3)``: M_MMAP_MAX = 0 serves large blocks from the heap, M_TRIM_THRESHOLD = -1
    never trims it. The cost is memory: the process holds its peak step's heap between steps instead of returning
    it, so fewer runs fit side by side. Hence opt-in (``--keep-freed-heap``; measured in training/README.md).
    Returns whether both settings were applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no glibc mallopt
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, -1))


def method_inputs(recipe: Recipe, model: nn.Module, head: nn.Module, dataset: Any, dev: torch.device, *,
                  init_head: bool, progress: bool):
    """What the recipe's method needs besides the batch: ``(teacher, cache, teacher_head)``, each None if unused.

    A pretrained start (``recipe.init``) or a method that reads the frozen network's embeddings computes them once
    per dataset (``training.teacher_cache``); a pretrained start also puts the head's class centres where that
    network already puts each class (``init_head``: not on resume, where the checkpoint's head is loaded).
    """
    method = get_method(recipe.method)
    num_classes = dataset.num_classes
    cache, means = None, None
    if recipe.init or method.needs_cache:
        cache = teacher_embeddings(model, dataset, TEACHER_CACHE_DIR, progress=progress)
        means = class_means(cache["hr"], cache["labels"], num_classes)
        if recipe.init and init_head:
            with torch.no_grad():
                head.weight.copy_(means)
    teacher_head = None
    if method.needs_teacher_head:  # the classifier at the pretrained class means, frozen
        teacher_head = get_head(recipe.head, model.embedding_dim, num_classes, **recipe.head_kwargs).to(dev)
        with torch.no_grad():
            teacher_head.weight.copy_(means)
        teacher_head.requires_grad_(False)
    teacher = None
    if method.needs_teacher:
        if not recipe.teacher:
            raise ValueError(f"recipe {recipe.name!r} needs a teacher checkpoint: --teacher PATH")
        tck = load_checkpoint(recipe.teacher)
        if tck["num_classes"] != num_classes:
            raise ValueError(f"teacher has {tck['num_classes']} classes, the data {num_classes}")
        t_model = model_from_checkpoint(tck)
        t_head = head_from_checkpoint(tck, t_model.embedding_dim)
        for p in list(t_model.parameters()) + list(t_head.parameters()):
            p.requires_grad_(False)
        teacher = (t_model.to(dev), t_head.to(dev))
        if dev.type == "cpu":
            t_model.to(memory_format=torch.channels_last)
    return teacher, cache, teacher_head


def train(recipe: Recipe, data: str | os.PathLike, out: str | os.PathLike, device: str = "cpu",
          seed: int = 0, resume: str | None = None, max_steps: int | None = None, workers: int = 0,
          max_bad_steps: int = 20, progress: bool = True, log_every: int = 10) -> dict[str, Any]:
    """Run (or resume) a recipe; returns ``{"losses": [...per step...], "steps", "skipped", ...}``."""
    recipe.validate()
    rank, world = _rank(), _world()
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda but CUDA is not available")
        local = int(os.environ.get("LOCAL_RANK", 0))
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    out = Path(out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    # Seeded: identical initial weights on every rank (DDP also broadcasts rank 0's).
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    model = get_model(recipe.model, **recipe.model_kwargs)
    dataset = build_dataset(data, size=model.input_size)
    num_classes = dataset.num_classes
    head = get_head(recipe.head, model.embedding_dim, num_classes, **recipe.head_kwargs)

    if recipe.init:
        # Start from a pretrained network (training.pretrained); on resume the checkpoint overwrites it below.
        initialise(model, recipe.init, recipe.model)
    teacher, cache, teacher_head = method_inputs(recipe, model, head, dataset, dev, init_head=not resume,
                                                 progress=progress and rank == 0)
    step_module = TrainStep(recipe, model, head, teacher, cache, teacher_head).to(dev)
    if dev.type == "cpu":  # weights in NHWC to match the channels_last inputs of TrainStep.embed
        model.to(memory_format=torch.channels_last)
    step_module.autocast = dev.type == "cuda"
    if recipe.batch_size % world:
        raise ValueError(f"batch size {recipe.batch_size} is not divisible by {world} processes")
    batch_per_rank = recipe.batch_size // world
    if batch_per_rank < 2:
        raise ValueError("each process needs at least 2 samples per batch (BatchNorm)")

    params = [p for p in step_module.parameters() if p.requires_grad]
    if recipe.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    elif recipe.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}")

    sampler = EpochBatchSampler(len(dataset), batch_per_rank, rank, world, seed)
    steps_per_epoch = sampler.num_batches
    total_steps = recipe.steps or recipe.epochs * steps_per_epoch
    num_epochs = -(-total_steps // steps_per_epoch)
    # A recipe's own step count ends the run like --max-steps does, but as the schedule's end.
    stop_at = min((s for s in (max_steps, recipe.steps) if s is not None), default=None)
    milestone_steps = [int(round(f * total_steps)) for f in recipe.lr_milestones]

    gen = torch.Generator().manual_seed(seed * 7919 + rank)
    start_epoch, epoch_step, step, bad_total = 0, 0, 0, 0
    if resume:
        ck = load_checkpoint(resume)
        if ck.get("optimizer") is None:
            raise ValueError(f"{resume} holds no training state (a final.pt?); resume from last.pt")
        if (ck["model_name"], ck["num_classes"]) != (recipe.model, num_classes):
            raise ValueError(f"{resume} was trained as {ck['model_name']} with {ck['num_classes']} classes, "
                             f"this run is {recipe.model} with {num_classes}")
        model.load_state_dict(ck["state_dict"])
        head.load_state_dict(ck["head_state_dict"])
        opt.load_state_dict(ck["optimizer"])
        start_epoch, epoch_step, step, bad_total = ck["epoch"], ck["epoch_step"], ck["step"], ck["bad_steps"]
        rngs = ck["rng"]
        if len(rngs) == world:
            _set_rng_state(rngs[rank], gen)
        else:  # a different process count: data order is kept, the RNG streams restart
            torch.manual_seed(seed + 1000 * (step + 1) + rank)
            gen.manual_seed(seed * 7919 + rank + 1000 * (step + 1))
    elif rank:
        torch.manual_seed(seed + 1000 * rank)  # different dropout streams per rank

    net: nn.Module = step_module
    if _dist_on():
        net = nn.parallel.DistributedDataParallel(step_module, device_ids=[dev.index] if dev.type == "cuda" else None)

    # Persistent workers are forked once, while this process is small: a worker forked at every epoch from a
    # process holding a multi-branch step's activations would copy those pages as they change.
    loader = DataLoader(IndexedDataset(dataset), batch_sampler=sampler, num_workers=workers, pin_memory=dev.type == "cuda",
                        generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0)
    logger = Logger(out, enabled=rank == 0, progress=progress, append=bool(resume))

    def snapshot(epoch_done: int, in_epoch: int, final: bool) -> None:
        rng = _all_gather_rng(gen)  # collective: every rank calls it
        if rank != 0:
            return
        base = {
            "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
            "model_name": recipe.model, "model_kwargs": recipe.to_dict()["model_kwargs"],
            "recipe": recipe.to_dict(), NORMALIZATION_KEY: dict(NORMALIZATION),
            "embedding_dim": int(model.embedding_dim), "input_size": int(model.input_size),
            "state_dict": model.state_dict(),
            "head_name": recipe.head, "head_kwargs": recipe.to_dict()["head_kwargs"],
            "num_classes": int(num_classes), "head_state_dict": head.state_dict(),
            "classes": [str(c) for c in getattr(dataset, "classes", [])],
            "class_sources": [source_identity(str(c)) for c in getattr(dataset, "classes", [])],
            "epoch": epoch_done, "epoch_step": in_epoch, "step": step, "bad_steps": bad_total,
            "total_steps": total_steps, "seed": seed, "world_size": world,
        }
        save_atomic({**base, "optimizer": opt.state_dict(), "rng": rng,
                      "scheduler": {"kind": "multistep", "milestone_steps": milestone_steps,
                                    "gamma": recipe.lr_gamma, "total_steps": total_steps}},
                     out / "last.pt")
        if final:
            save_atomic({**base, "optimizer": None, "rng": None}, out / "final.pt")

    buffers = [b for b in model.buffers() if b.is_floating_point()]
    losses: list[float] = []
    consecutive_bad = 0
    stop = False
    t0 = time.time()
    if rank == 0:
        print(f"[crres] recipe {recipe.name} ({recipe.paper}): {recipe.model}, {len(dataset)} images, "
              f"{num_classes} identities, {world} process(es) x {batch_per_rank}, {steps_per_epoch} steps/epoch x "
              f"{num_epochs} epochs = {total_steps} steps, milestones {milestone_steps}, device {dev}",
              file=sys.stderr)
    epoch = start_epoch
    for epoch in range(start_epoch, num_epochs):
        skip = epoch_step if epoch == start_epoch else 0
        sampler.set_epoch(epoch, skip)
        step_module.train()
        bar = _progress(steps_per_epoch, skip, f"epoch {epoch + 1}/{num_epochs}", rank == 0 and progress)
        in_epoch = skip
        for images, labels, index in loader:
            if stop_at is not None and step >= stop_at:
                stop = True
                break
            images = images.to(dev, non_blocking=True)
            labels = labels.to(dev, non_blocking=True)
            lr = recipe.lr * lr_factor(step, total_steps, recipe.lr_milestones, recipe.lr_gamma,
                                       recipe.warmup_fraction)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            # A non-finite forward would also poison BatchNorm's running statistics: keep a copy.
            saved = [b.detach().clone() for b in buffers]
            parts = net(images, labels, gen, index)
            loss = parts["loss"]
            # Agree on finiteness (and average the logged loss) across ranks before backward.
            stats = torch.stack([loss.detach().float(), (~torch.isfinite(loss.detach())).float()])
            if _dist_on():
                dist.all_reduce(stats)
                stats[0] /= world
            bad = bool(stats[1] > 0)
            if not bad:
                loss.backward()
                if recipe.clip_grad_norm:
                    gnorm = nn.utils.clip_grad_norm_(params, recipe.clip_grad_norm)
                else:
                    gnorm = torch.sqrt(sum((p.grad.float() ** 2).sum() for p in params if p.grad is not None))
                bad = not bool(torch.isfinite(gnorm))  # gradients are all-reduced: same on every rank
                if not bad:
                    opt.step()
            step += 1
            in_epoch += 1
            if bad:
                bad_total += 1
                consecutive_bad += 1
                opt.zero_grad(set_to_none=True)
                with torch.no_grad():
                    for b, old in zip(buffers, saved):
                        b.copy_(old)
                if consecutive_bad >= max_bad_steps:
                    raise FloatingPointError(f"{consecutive_bad} consecutive non-finite steps (step {step}); "
                                             f"aborting - lower the learning rate or check the data")
            else:
                consecutive_bad = 0
            if stop_at is not None and step >= stop_at:
                stop = True
            loss_value = float(stats[0])
            losses.append(loss_value)
            row = {"time": round(time.time() - t0, 3), "epoch": epoch, "step": step, "lr": lr,
                   "loss": loss_value, "skipped": int(bad), "skipped_total": bad_total}
            row.update({k: float(v.detach()) for k, v in parts.items() if k != "loss"})
            logger.log(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", skipped=bad_total)
            elif rank == 0 and progress and (step % log_every == 0 or in_epoch == steps_per_epoch):
                print(f"epoch {epoch + 1}/{num_epochs} step {in_epoch}/{steps_per_epoch} (global {step}) "
                      f"loss {loss_value:.4f} lr {lr:.2e} skipped {bad_total}", file=sys.stderr, flush=True)
            if stop:
                break
        if bar is not None:
            bar.close()
        if stop:
            snapshot(epoch, in_epoch, final=True)
            break
        snapshot(epoch + 1, 0, final=epoch + 1 == num_epochs)
        epoch_step = 0
    else:
        if start_epoch >= num_epochs:  # resumed a finished run: refresh final.pt
            snapshot(num_epochs, 0, final=True)
    logger.close()
    return {"losses": losses, "steps": step, "skipped": bad_total, "epochs": num_epochs,
            "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "out": str(out),
            "seconds": time.time() - t0}


# --- command line ------------------------------------------------------------------------------------------

def _parse_set(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a bare string
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", required=True, help=f"one of: {', '.join(list_recipes())}")
    p.add_argument("--data", required=True, help="image folder (<id>/<img>) or InsightFace train.rec folder/file")
    p.add_argument("--out", default="runs/train", help="output folder (checkpoints, logs)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps", type=int, help="schedule length in optimiser steps (replaces epochs x steps/epoch)")
    p.add_argument("--batch-size", type=int, help="global batch size (split across processes)")
    p.add_argument("--lr", type=float)
    p.add_argument("--teacher", help="teacher checkpoint (final.pt) for wave_kd")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override any recipe field, e.g. --set model=mobilefacenet "
                        "--set 'sampler_kwargs={\"r\": 7}'")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", help="checkpoint to resume (OUT/last.pt)")
    p.add_argument("--max-steps", type=int, help="stop after this many global steps (schedule unchanged)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes per rank")
    p.add_argument("--max-bad-steps", type=int, default=20, help="abort after this many consecutive NaN/inf steps")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--keep-freed-heap", action="store_true",
                   help="CPU: keep freed memory in the heap (glibc mallopt). Up to 3x faster multi-branch steps, "
                        "but the process holds its peak step's memory between steps (a four-branch Lai run: 16.7 GB)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = _parse_set(args.set)
    # Explicit flags win over --set; unset flags (None) must not clobber a --set of the same field.
    flags = {"epochs": args.epochs, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "teacher": args.teacher}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    try:
        recipe = get_recipe(args.recipe, **overrides)
    except (KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        backend = "nccl" if args.device == "cuda" else "gloo"
        if args.device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    rank = int(os.environ.get("RANK", "0"))
    if args.keep_freed_heap and args.device == "cpu":
        keep_freed_heap()
    try:
        result = train(recipe, args.data, args.out, device=args.device, seed=args.seed, resume=args.resume,
                       max_steps=args.max_steps, workers=args.workers, max_bad_steps=args.max_bad_steps,
                       progress=not args.no_progress)
    finally:
        if _dist_on():
            dist.destroy_process_group()
    if rank == 0:
        losses = result["losses"]
        summary = {k: v for k, v in result.items() if k != "losses"}
        summary.update(first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None)
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
