"""Degradations: the one definition of resolution r against independent references (PIL, the C++
core), plus shapes, seeding and the sampling proportions of each recipe."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from training import degradations as dg

torch.set_num_threads(2)
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """A real 112x112 RGB face crop (skimage's astronaut), uint8."""
    skdata = pytest.importorskip("skimage.data")
    img = Image.fromarray(skdata.astronaut()).crop((140, 20, 340, 220)).resize((112, 112), Image.BICUBIC)
    return np.array(img)


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].to(torch.float32)


def pil_degrade(a: np.ndarray, r: int, resample) -> np.ndarray:
    """F_up(F_down,r) with PIL on float ("F" mode) planes: no 8-bit rounding, no clamping."""
    h, w = a.shape[:2]
    planes = []
    for ch in range(a.shape[2]):
        p = Image.fromarray(a[..., ch].astype(np.float32), mode="F")
        planes.append(np.asarray(p.resize((r, r), resample).resize((w, h), resample)))
    return np.stack(planes, -1)


@pytest.mark.parametrize("r", [7, 14, 20, 28, 56, 100])
@pytest.mark.parametrize("mode,resample", [("bicubic", "BICUBIC"), ("bilinear", "BILINEAR")])
def test_degrade_matches_pil(face, r, mode, resample):
    ref = pil_degrade(face, r, getattr(Image, resample))
    got = dg.degrade(to_tensor(face), r, mode)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, ref, atol=0.02)  # on a 0..255 scale


def test_degrade_matches_the_cpp_core(face):
    preprocess = pytest.importorskip("crres_sdk.preprocess")
    x = torch.cat([to_tensor(face), to_tensor(face[::-1].copy())]) / 255
    sizes = [9, 33]
    ref = preprocess.degrade(x.numpy(), np.array(sizes), layout="nchw")
    got = dg.degrade_batch(x, sizes).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_degrade_identity_at_full_resolution_and_rejects_bad_r(face):
    x = to_tensor(face)
    assert torch.equal(dg.degrade(x, 112), x)
    assert not torch.equal(dg.degrade(x, 111), x)
    for r in (0, 113):
        with pytest.raises(ValueError):
            dg.degrade(x, r)
    with pytest.raises(ValueError):
        dg.degrade(x.to(torch.uint8), 14)


def test_lower_resolution_loses_more_detail(face):
    x = to_tensor(face)
    err = [(dg.degrade(x, r) - x).abs().mean().item() for r in (7, 14, 28, 56)]
    assert err == sorted(err, reverse=True) and err[-1] > 0


def test_degrade_batch_groups_sizes_without_mixing_samples():
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    sizes = torch.tensor([8, 32, 8, 16, 5, 32])
    out = dg.degrade_batch(x, sizes)
    for i, r in enumerate(sizes.tolist()):
        torch.testing.assert_close(out[i:i + 1], dg.degrade(x[i:i + 1], r), rtol=0, atol=1e-6)
    assert torch.equal(out[1], x[1]) and torch.equal(out[5], x[5])
    with pytest.raises(ValueError):
        dg.degrade_batch(x, [8, 8])


def test_non_square_crops_follow_the_core_rounding():
    x = torch.rand(1, 3, 40, 30)
    assert dg.degraded_side(40, 30, 7) == 9  # round(40 * 7 / 30) = round(9.33)
    assert dg.degrade(x, 7).shape == x.shape


# ---------------------------------------------------------------- samplers

def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("sampler", [
    lambda gen: dg.sample_bt_r(64, 14, generator=gen),
    lambda gen: dg.sample_bt_m(64, generator=gen),
    lambda gen: dg.sample_maug(64, generator=gen),
    lambda gen: dg.sample_paug(64, generator=gen),
    lambda gen: dg.sample_uniform_range(64, generator=gen),
])
def test_samplers_are_deterministic_by_seed(sampler):
    a, b, c = sampler(g(1)), sampler(g(1)), sampler(g(2))
    assert a.shape == (64,) and a.dtype == torch.int64
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("n", [1, 2, 7, 128])
def test_bt_r_degrades_exactly_half(n):
    sizes = dg.sample_bt_r(n, 14, generator=g(n))
    assert int((sizes == 14).sum()) == round(n * 0.5)
    assert set(sizes.tolist()) <= {14, 112}


def test_bt_m_half_of_batch_uniform_over_five_sizes():
    n = 20000
    sizes = dg.sample_bt_m(n, generator=g(3))
    counts = {r: int((sizes == r).sum()) for r in dg.BTM_SIZES}
    assert set(sizes.tolist()) <= set(dg.BTM_SIZES)
    # Half untouched (112) plus a fifth of the selected half drawing 112.
    assert counts[112] == pytest.approx(n * (0.5 + 0.5 / 5), rel=0.03)
    for r in (7, 14, 28, 56):
        assert counts[r] == pytest.approx(n * 0.1, rel=0.06)


def test_maug_ratio_is_1_1_2_and_paug_uniform():
    n = 20000
    m = dg.sample_maug(n, generator=g(4))
    assert set(m.tolist()) == {7, 14, 20}
    frac = [float((m == r).float().mean()) for r in (7, 14, 20)]
    np.testing.assert_allclose(frac, [0.25, 0.25, 0.5], atol=0.015)
    p = dg.sample_paug(n, generator=g(5))
    assert set(p.tolist()) == {7, 14, 28, 56}
    np.testing.assert_allclose([float((p == r).float().mean()) for r in (7, 14, 28, 56)], [0.25] * 4, atol=0.015)


def test_uniform_range_covers_its_inclusive_bounds():
    s = dg.sample_uniform_range(5000, lo=8, hi=128, hr_size=128, generator=g(6))
    assert s.min() == 8 and s.max() == 128
    with pytest.raises(ValueError):
        dg.sample_uniform_range(4, lo=8, hi=128, hr_size=112)


def test_lai_branches_are_hr_16_12_8_bilinear():
    x = torch.rand(2, 3, 128, 128, generator=g(7))
    branches = dg.lai_branches(x)
    assert len(branches) == 4 and branches[0] is x
    for b, r in zip(branches[1:], (16, 12, 8)):
        torch.testing.assert_close(b, dg.degrade(x, r, "bilinear"))


# ---------------------------------------------------------------- Lu & Ebrahimi model

def test_kernels_are_normalised_and_shaped():
    gk = dg.gaussian_kernels(torch.tensor([1.0, 2.0]), 21)
    torch.testing.assert_close(gk.sum(dim=(1, 2)), torch.ones(2))
    ax = torch.arange(21.0) - 10
    var = (gk[1].sum(0) * ax**2).sum()
    assert var.item() == pytest.approx(4.0, rel=1e-3)  # second moment of sigma=2
    mk = dg.motion_kernels(torch.tensor([7.0]), torch.tensor([0.0]), 21)[0]
    torch.testing.assert_close(mk.sum(), torch.tensor(1.0))
    assert mk[10].sum() > 0.99  # angle 0: a horizontal segment on the centre row
    assert int((mk[10] > 0).sum()) == 9  # 7 px long plus the tent's half pixel each side
    const = torch.full((2, 3, 16, 16), 0.3)
    torch.testing.assert_close(dg.blur(const, gk), const)


@pytest.mark.parametrize("quality", [30, 60, 95])
def test_jpeg_approximation_is_close_to_pil(face, quality):
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, "JPEG", quality=quality)
    pil = np.asarray(Image.open(buf)).astype(np.float64)
    ours = dg.jpeg_approx(to_tensor(face) / 255, torch.tensor([quality]))[0].permute(1, 2, 0).numpy() * 255

    def psnr(a, b):
        return 10 * np.log10(255**2 / np.mean((a - b) ** 2))

    orig = face.astype(np.float64)
    assert psnr(ours, pil) > 38  # close to libjpeg's pixels ...
    assert abs(psnr(ours, orig) - psnr(pil, orig)) < 1.0  # ... and as lossy as libjpeg
    assert psnr(ours, orig) < 45  # and really lossy


def test_lu_degradation_seeded_and_reduces_to_degrade_without_corruptions(face):
    x = torch.cat([to_tensor(face)] * 4) / 255
    a, sa = dg.lu_degradation(x, generator=g(8))
    b, sb = dg.lu_degradation(x, generator=g(8))
    assert a.shape == x.shape and torch.equal(a, b) and torch.equal(sa, sb)
    assert ((sa >= 7) & (sa <= 112)).all()
    clean, sizes = dg.lu_degradation(x, sizes=[14, 28, 56, 112], p=0.0, generator=g(9))
    torch.testing.assert_close(clean, dg.degrade_batch(x, sizes))
    dirty, _ = dg.lu_degradation(x, sizes=[14, 28, 56, 112], p=1.0, generator=g(9))
    assert (dirty - clean).abs().amax(dim=(1, 2, 3)).min() > 0.01  # every sample corrupted
    small, _ = dg.lu_degradation(x, sizes=[14] * 4, upsample=False, generator=g(10))
    assert small.shape == (4, 3, 14, 14)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batched_degradations_run_on_the_gpu_and_match_cpu():
    x = torch.rand(6, 3, 112, 112, generator=g(11))
    sizes = dg.sample_bt_m(6, generator=g(12))
    torch.testing.assert_close(dg.degrade_batch(x.cuda(), sizes).cpu(), dg.degrade_batch(x, sizes),
                               rtol=1e-4, atol=1e-4)
    a, _ = dg.lu_degradation(x.cuda(), generator=g(13))
    b, _ = dg.lu_degradation(x, generator=g(13))
    assert a.is_cuda
    # JPEG rounding can flip a level where CPU and GPU float sums differ in the last bit.
    assert (a.cpu() - b).abs().mean() < 1e-3
