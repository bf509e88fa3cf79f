"""Gallery hypotheses from the degradations (eq. 1, Fig. 2): the chains of 1..3 Table 1 functions
(``enumerate_chains``, ``count_chains``, ``sample_chains``), ``apply_chain`` with its x2 bicubic downsampling between
steps and the ``kernel_scaling`` choice for the blurs, and resolution matching (Sec. 3.2 end, Sec. 4.2:
``match_resolution``), which brings a gallery hypothesis to the super-resolved probe's size and then to the
network's input size."""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from crres_sdk.mitm._checks import _check_image
from crres_sdk.mitm.degradations import (
    DEFAULT_KERNEL_SCALING, DEGRADATIONS, DEGRADATION_NAMES, KERNEL_REFERENCE, KERNEL_SCALINGS, SCALED_BLURS,
)
from crres_sdk.preprocess import resize_bicubic


# ------------------------------------------------------------------------------------------ eq. 1: chains

def enumerate_chains(max_len: int = 3, names: Sequence[str] = DEGRADATION_NAMES) -> list[tuple[str, ...]]:
    """Every chain of 1..max_len degradations (Fig. 2: l options at each step, so sum_k l^k paths; 1463 for
    l = 11, max_len = 3), by length, then in Table 1 order."""
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be an int >= 1, got {max_len!r}")
    names = tuple(names)
    unknown = [n for n in names if n not in DEGRADATIONS]
    if unknown or not names:
        raise ValueError(f"names must be a non-empty subset of {DEGRADATION_NAMES}, got {list(names)}")
    return [chain for k in range(1, max_len + 1) for chain in itertools.product(names, repeat=k)]


def count_chains(max_len: int = 3, n_functions: int = len(DEGRADATION_NAMES)) -> int:
    """sum_{k=1..max_len} l^k, the size of ``enumerate_chains``."""
    return sum(n_functions ** k for k in range(1, max_len + 1))


def sample_chains(n: int, seed: int = 0, max_len: int = 3) -> list[tuple[str, ...]]:
    """``n`` distinct chains drawn uniformly from ``enumerate_chains(max_len)`` (cheaper enrolment), in order."""
    chains = enumerate_chains(max_len)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(chains):
        raise ValueError(f"n must be an int in [1, {len(chains)}], got {n!r}")
    idx = np.sort(np.random.default_rng(seed).choice(len(chains), n, replace=False))
    return [chains[i] for i in idx]


def downsample2(img: np.ndarray) -> np.ndarray:
    """The ``down_s`` of eq. 1: x2 antialiased bicubic downsampling (sides rounded half up)."""
    h, w = img.shape[:2]
    return resize_bicubic(img, (max(1, (h + 1) // 2), max(1, (w + 1) // 2)))


def _check_kernel_scaling(kernel_scaling: str, kernel_reference: int) -> None:
    if kernel_scaling not in KERNEL_SCALINGS:
        raise ValueError(f"kernel_scaling must be one of {KERNEL_SCALINGS}, got {kernel_scaling!r}")
    if isinstance(kernel_reference, bool) or not isinstance(kernel_reference, (int, np.integer)) \
            or kernel_reference < 1:
        raise ValueError(f"kernel_reference must be an int >= 1, got {kernel_reference!r}")


def apply_chain(img: np.ndarray, chain: Sequence[str], seed: int | Sequence[int] = 0, *,
                kernel_scaling: str = DEFAULT_KERNEL_SCALING, kernel_reference: int = KERNEL_REFERENCE) -> np.ndarray:
    """Eq. 1: ``rho_k(down2(... down2(rho_1(G))))``; a chain of length k returns an image 2^(k-1) times smaller.

    The random parameters of all steps come, in order, from one ``numpy.random.default_rng(seed)``; the empty
    chain returns a copy of ``img`` (the undegraded gallery image). ``kernel_scaling="image"``: the blurs of
    ``SCALED_BLURS`` run with ``kernel_scale = current width / kernel_reference`` (1, 1/2, 1/4 along a chain on a
    112 px crop); ``"literal"``: Table 1's pixel sizes at every step, as the paper's text reads.
    """
    img = _check_image(img)
    _check_kernel_scaling(kernel_scaling, kernel_reference)
    if isinstance(chain, str) or not all(isinstance(c, str) for c in chain):
        raise TypeError(f"chain must be a sequence of degradation names, got {chain!r}")
    unknown = [c for c in chain if c not in DEGRADATIONS]
    if unknown:
        raise ValueError(f"unknown degradation(s) {unknown}; known: {', '.join(DEGRADATION_NAMES)}")
    rng = np.random.default_rng(seed)
    out = img.copy()
    for step, name in enumerate(chain):
        if step:
            out = downsample2(out)
            if min(out.shape[:2]) < 2:
                raise ValueError(f"image {img.shape[:2]} is too small for a chain of {len(chain)} steps")
        if kernel_scaling == "image" and name in SCALED_BLURS:
            out = DEGRADATIONS[name](out, rng, kernel_scale=out.shape[1] / kernel_reference)
        else:
            out = DEGRADATIONS[name](out, rng)
    return out


# ---------------------------------------------------------------------------------- resolution matching

def match_resolution(img: np.ndarray, size: int, out_size: int = 112) -> np.ndarray:
    """Sec. 3.2/4.2 resolution matching: resize to the probe's ``size`` (px, the width; antialiased bicubic),
    then to the recognition network's ``out_size``. A ``size`` at or above ``out_size`` resizes straight to
    ``out_size`` (the paper's 8x = 192 px case: above the network input there is nothing to match)."""
    img = _check_image(img)
    for value, what in ((size, "size"), (out_size, "out_size")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{what} must be an int >= 1, got {value!r}")
    h, w = img.shape[:2]
    if size < out_size:
        img = resize_bicubic(img, (max(1, int(round(h * size / w))), int(size)))
    return resize_bicubic(img, (out_size, out_size))
