"""Meet-in-the-middle (Grm et al. 2023) core in crres_sdk.mitm: each Table 1 degradation does what it claims,
eq. 1 chains (count, x2 downsampling between steps), resolution matching, multi-hypothesis probes, the fusion math
of eqs. 3-5 / Fig. 4 on constructed vectors (hand-computed), and the matcher end to end with a toy embedder
(a fixed random projection of the pixels: a test double for the matching math, not a face model)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from crres_sdk import mitm
from crres_sdk.preprocess import align_faces_uint8, degrade, resize_bicubic
from tests.faces import ASTRONAUT_LANDMARKS, astronaut_bgr

Image = pytest.importorskip("PIL.Image")

RANDOM = ("gaussian_noise", "speckle_noise", "color_jitter", "brightness_jitter", "perspective", "shear",
          "down_up", "patch_shuffle")
FIXED = ("motion_blur", "gaussian_blur", "disk_blur")


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """The astronaut's face aligned to the 112 x 112 template (uint8 BGR)."""
    return align_faces_uint8(astronaut_bgr(), ASTRONAUT_LANDMARKS)


def hf_energy(img: np.ndarray) -> float:
    """Mean squared Laplacian: high-frequency energy."""
    return float(np.mean(cv2.Laplacian(img.astype(np.float64), cv2.CV_64F) ** 2))


# ------------------------------------------------------------------------------------------ Table 1, generic

def test_table1_has_eleven_functions_in_paper_order():
    assert mitm.DEGRADATION_NAMES == RANDOM[:4] + FIXED[:1] + FIXED[1:] + RANDOM[4:]
    assert len(mitm.DEGRADATIONS) == 11


@pytest.mark.parametrize("name", mitm.DEGRADATION_NAMES)
def test_degradation_shape_dtype_determinism(face, name):
    out = mitm.apply_degradation(face, name, 7)
    assert out.shape == face.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - face).mean() > 0.5, "the degradation left the image (almost) unchanged"
    np.testing.assert_array_equal(out, mitm.apply_degradation(face, name, 7))
    other = mitm.apply_degradation(face, name, 8)
    if name in RANDOM:
        assert not np.array_equal(out, other), "a random degradation ignores its seed"
    else:
        np.testing.assert_array_equal(out, other)
    odd = face[:57, :43].copy()       # any size, not only squares
    assert mitm.apply_degradation(odd, name, 1).shape == odd.shape


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8),
                                 np.zeros((1, 8, 3), np.uint8), [[0, 0, 0]]])
def test_degradation_rejects_bad_images(bad):
    with pytest.raises((TypeError, ValueError)):
        mitm.gaussian_noise(bad, np.random.default_rng(0))


def test_degradation_rejects_bad_rng_and_name(face):
    with pytest.raises(TypeError, match="Generator"):
        mitm.motion_blur(face, 0)
    with pytest.raises(ValueError, match="unknown degradation"):
        mitm.apply_degradation(face, "sharpen", 0)


# ------------------------------------------------------------------------------------ Table 1, one by one

def test_gaussian_noise_has_variance_002():
    grey = np.full((200, 200, 3), 128, np.uint8)
    out = mitm.gaussian_noise(grey, np.random.default_rng(0)).astype(np.float64) / 255
    assert out.var() == pytest.approx(0.02, rel=0.05)        # Table 1: variance 0.02 on [0, 1]
    assert out.mean() == pytest.approx(128 / 255, abs=0.01)  # mean 0 noise


def test_speckle_noise_is_multiplicative():
    grey = np.full((200, 200, 3), 128, np.uint8)
    out = mitm.speckle_noise(grey, np.random.default_rng(0)).astype(np.float64) / 255
    assert out.var() == pytest.approx((128 / 255) ** 2 * 0.02, rel=0.05)   # Var(x n) = x^2 * 0.02
    black = np.zeros((50, 50, 3), np.uint8)
    np.testing.assert_array_equal(mitm.speckle_noise(black, np.random.default_rng(0)), black)


def test_color_jitter_changes_hue_saturation_not_value(face):
    out = mitm.color_jitter(face, np.random.default_rng(3))
    # V = max channel is what HSV keeps; hue/saturation are what changes.
    assert np.abs(out.max(axis=2).astype(int) - face.max(axis=2)).max() <= 1
    hsv_in = cv2.cvtColor(face.astype(np.float32) / 255, cv2.COLOR_BGR2HSV)
    hsv_out = cv2.cvtColor(out.astype(np.float32) / 255, cv2.COLOR_BGR2HSV)
    sat = hsv_in[..., 1] > 0.2                                   # where hue is well defined
    dh = np.angle(np.exp(1j * np.radians(hsv_out[..., 0] - hsv_in[..., 0])[sat]), deg=True)
    assert 3 < abs(np.median(dh)) <= 18.5                        # one hue shift, within +-0.05 of the circle
    ratio = np.median(hsv_out[..., 1][sat] / hsv_in[..., 1][sat])
    assert 0.5 <= ratio <= 1.5 and abs(ratio - 1) > 0.05         # saturation scaled by U(0.5, 1.5)
    grey = np.repeat(face.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)  # no hue, no saturation
    np.testing.assert_array_equal(mitm.color_jitter(grey, np.random.default_rng(3)), grey)


def test_brightness_jitter_is_an_affine_intensity_map(face):
    out = mitm.brightness_jitter(face, np.random.default_rng(5)).astype(np.float64)
    x = face.astype(np.float64)
    ok = (out > 0) & (out < 255)                 # unclipped pixels
    a, c = np.polyfit(x[ok], out[ok], 1)
    assert np.abs(a * x[ok] + c - out[ok]).max() <= 1.0   # one gain and offset for every pixel (rounding only)
    assert 0.36 <= a <= 1.96 and abs(a - 1) > 0.01      # gain = brightness x contrast, each in [0.6, 1.4]


def test_motion_blur_is_a_horizontal_20_px_box(face):
    rows = np.repeat(np.repeat((np.arange(64) % 2 * 255).astype(np.uint8)[:, None], 64, 1)[..., None], 3, 2)
    np.testing.assert_array_equal(mitm.motion_blur(rows, np.random.default_rng(0)), rows)  # constant along x
    cols = rows.transpose(1, 0, 2).copy()                                                 # varies along x
    assert np.abs(mitm.motion_blur(cols, np.random.default_rng(0))[:, 12:52].astype(int) - 127.5).max() <= 1
    out = mitm.motion_blur(face, np.random.default_rng(0)).astype(np.float64)
    # interior: the mean of 20 horizontal neighbours (OpenCV anchors an even kernel at its centre, i.e. 10 left)
    ref = np.stack([face[:, x - 10:x + 10].astype(np.float64).mean(axis=1) for x in range(10, 102)], 1)
    assert np.abs(out[:, 10:102] - ref).max() <= 0.5 + 1e-9
    assert hf_energy(out) < 0.5 * hf_energy(face)


def test_gaussian_blur_sigma_11_window_5(face):
    k = mitm.gaussian_kernel()
    assert k.shape == (5, 5) and k.sum() == pytest.approx(1.0)
    g = np.exp(-np.array([4.0, 1.0, 0.0, 1.0, 4.0]) / (2 * 1.1 ** 2))
    assert k[2, 2] == pytest.approx(1 / g.sum() ** 2) and k[0, 2] / k[2, 2] == pytest.approx(math.exp(-4 / 2.42))
    out = mitm.gaussian_blur(face, np.random.default_rng(0)).astype(np.float64)
    x = face.astype(np.float64)
    ref = sum(k[i, j] * x[i:i + 108, j:j + 108] for i in range(5) for j in range(5))
    assert np.abs(out[2:110, 2:110] - ref).max() <= 0.5 + 1e-6
    assert hf_energy(out) < 0.5 * hf_energy(face)


def test_disk_blur_impulse_response_is_a_radius_5_disk():
    img = np.zeros((31, 31, 3), np.uint8)
    img[15, 15] = 255
    out = mitm.disk_blur(img, np.random.default_rng(0))[..., 0]
    yy, xx = np.mgrid[-15:16, -15:16]
    disk = xx ** 2 + yy ** 2 <= 25
    assert disk.sum() == 81
    np.testing.assert_array_equal(out > 0, disk)
    assert set(np.unique(out[disk])) == {round(255 / 81)}


def test_perspective_is_projective_and_bounded(face):
    m = mitm.perspective_matrix(face.shape, np.random.default_rng(2))
    assert np.abs(m[2, :2]).max() > 1e-6                      # not affine
    corners = np.float32([[0, 0], [111, 0], [111, 111], [0, 111]])[None]
    moved = cv2.perspectiveTransform(corners, m)[0]
    assert np.abs(moved - corners[0]).max() <= 0.1 * 111 + 1e-3
    flat = np.full((40, 40, 3), 77, np.uint8)
    np.testing.assert_array_equal(mitm.perspective(flat, np.random.default_rng(2)), flat)


def test_shear_slants_vertical_lines_about_the_centre():
    slopes = []
    for seed in range(6):
        img = np.zeros((101, 101, 3), np.uint8)
        img[:, 50] = 255
        img[50, :] = 255
        out = mitm.shear(img, np.random.default_rng(seed))[..., 0].astype(np.float64)
        rows = np.arange(10, 91)
        rows = rows[np.abs(rows - 50) > 2]
        xs = np.array([(out[y] * np.arange(101)).sum() / out[y].sum() for y in rows])   # line centre per row
        slope, intercept = np.polyfit(rows - 50, xs, 1)
        assert np.abs(slope * (rows - 50) + intercept - xs).max() < 0.6    # still a straight line
        assert intercept == pytest.approx(50, abs=0.3)                     # ... through the centre
        assert abs(slope) <= 0.2 + 1e-6
        assert out[50].min() > 0                                          # the centre row does not move
        slopes.append(slope)
    assert np.ptp(slopes) > 0.05


def test_down_up_is_the_sdk_degrade(face):
    for seed in range(4):
        r = mitm.down_up_size(112, np.random.default_rng(seed))
        assert 28 <= r <= 56
        np.testing.assert_array_equal(mitm.down_up(face, np.random.default_rng(seed)), degrade(face, r))
    assert hf_energy(mitm.down_up(face, np.random.default_rng(0))) < 0.5 * hf_energy(face)


def test_patch_shuffle_permutes_within_2x2_blocks(face):
    img = face[:, :111].copy()      # odd width: the last column is not part of a block
    out = mitm.patch_shuffle(img, np.random.default_rng(1))
    np.testing.assert_array_equal(out[:, 110], img[:, 110])
    blocks = lambda a: np.sort(a[:, :110].reshape(56, 2, 55, 2, 3).transpose(0, 2, 1, 3, 4)
                               .reshape(56, 55, 4, 3).view(np.dtype((np.void, 3))).reshape(56, 55, 4), axis=2)
    np.testing.assert_array_equal(blocks(out), blocks(img))      # same pixels in every block
    assert (out != img).any(axis=2).mean() > 0.3                 # but moved


# ------------------------------------------------------------------------------------------- eq. 1 chains

def test_chain_count_is_sum_of_powers():
    chains = mitm.enumerate_chains(3)
    assert len(chains) == 11 + 11 ** 2 + 11 ** 3 == 1463 == mitm.count_chains(3)
    assert len(set(chains)) == 1463
    assert chains[:11] == [(n,) for n in mitm.DEGRADATION_NAMES]
    assert [len(c) for c in chains] == [1] * 11 + [2] * 121 + [3] * 1331
    assert len(mitm.enumerate_chains(2)) == 132 and len(mitm.enumerate_chains(1)) == 11
    assert len(mitm.enumerate_chains(2, ["shear", "down_up"])) == 6
    sample = mitm.sample_chains(50, seed=4)
    assert len(set(sample)) == 50 and set(sample) <= set(chains) and sample == mitm.sample_chains(50, seed=4)
    with pytest.raises(ValueError):
        mitm.enumerate_chains(0)
    with pytest.raises(ValueError):
        mitm.enumerate_chains(2, ["blur"])


def test_downsample2_is_pil_bicubic(face):
    ref = np.asarray(Image.fromarray(face).resize((56, 56), Image.BICUBIC))
    np.testing.assert_array_equal(mitm.downsample2(face), ref)


def test_apply_chain_follows_eq1(face):
    chain = ("gaussian_blur", "gaussian_noise", "shear")
    out = mitm.apply_chain(face, chain, seed=11, kernel_scaling="literal")
    rng = np.random.default_rng(11)
    ref = mitm.shear(mitm.downsample2(mitm.gaussian_noise(mitm.downsample2(mitm.gaussian_blur(face, rng)), rng)), rng)
    np.testing.assert_array_equal(out, ref)
    assert out.shape == (28, 28, 3)
    assert mitm.apply_chain(face, ("shear",), 0).shape == (112, 112, 3)
    assert mitm.apply_chain(face, ("shear", "disk_blur"), 0).shape == (56, 56, 3)
    np.testing.assert_array_equal(mitm.apply_chain(face, (), 0), face)
    np.testing.assert_array_equal(out, mitm.apply_chain(face, chain, seed=11, kernel_scaling="image"))  # step 1: s=1
    assert not np.array_equal(out, mitm.apply_chain(face, chain, seed=12))
    with pytest.raises(ValueError, match="unknown"):
        mitm.apply_chain(face, ("shear", "warp"), 0)
    with pytest.raises(TypeError):
        mitm.apply_chain(face, "shear", 0)
    with pytest.raises(ValueError, match="too small"):
        mitm.apply_chain(face[:3, :3].copy(), chain, 0)


# ------------------------------------------------------------------- Table 1 blur kernels scaled with the image

def kernel_std(k: np.ndarray) -> tuple[float, float]:
    """Spatial standard deviation of a kernel along y and x (its second central moment)."""
    yy, xx = np.mgrid[:k.shape[0], :k.shape[1]]
    k = k / k.sum()
    my, mx = (k * yy).sum(), (k * xx).sum()
    return float(np.sqrt((k * (yy - my) ** 2).sum())), float(np.sqrt((k * (xx - mx) ** 2).sum()))


def blur_kernel(name: str, scale: float) -> np.ndarray:
    """The kernel the blur ``name`` applies at ``kernel_scale=scale`` (its builder at the scaled parameters)."""
    if name == "motion_blur":
        return mitm.motion_kernel(mitm.motion_window(scale))
    if name == "gaussian_blur":
        return mitm.gaussian_kernel(*mitm.gaussian_params(scale))
    return mitm.disk_kernel(mitm.DISK_RADIUS * scale)


@pytest.mark.parametrize("name", mitm.SCALED_BLURS)
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25])
def test_blur_applies_its_scaled_kernel(name, scale, face):
    """The function filters with ``blur_kernel(name, scale)``, and at scale 1 with the literal Table 1 kernel."""
    rng = np.random.default_rng(0)
    out = mitm.DEGRADATIONS[name](face, rng, kernel_scale=scale)
    ref = cv2.filter2D(face.astype(np.float32), -1, blur_kernel(name, scale).astype(np.float32),
                       borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_array_equal(out, np.clip(np.rint(ref), 0, 255).astype(np.uint8))
    if scale == 1.0:
        np.testing.assert_array_equal(out, mitm.DEGRADATIONS[name](face, rng))


@pytest.mark.parametrize("name", mitm.SCALED_BLURS)
@pytest.mark.parametrize("size", [84, 56, 28])
def test_kernel_at_size_s_is_the_112_kernel_scaled_by_s_over_112(name, size):
    """The kernel's spatial spread (std along x and y) is the 112 px kernel's times s / 112, within the error of
    drawing it on whole pixels: a box length rounded to whole taps, a disk's lattice points; a Gaussian whose
    scaled sigma is below half a pixel cannot be point-sampled and collapses towards one tap (never wider)."""
    s = size / 112
    ref_y, ref_x = kernel_std(blur_kernel(name, 1.0))
    got_y, got_x = kernel_std(blur_kernel(name, s))
    if name == "motion_blur":
        assert got_y < 1e-9 and ref_y < 1e-9                                 # horizontal only
        n = mitm.motion_window(s)
        assert abs(n - 20 * s) <= 0.5                                        # box length 20 x s, rounded
        assert got_x == pytest.approx(math.sqrt((n * n - 1) / 12))           # std of an n-tap box
        assert abs(got_x - s * ref_x) <= 0.5 / math.sqrt(3) * 1.01           # <= std change of +-1/2 px length
        return
    for got, ref in ((got_x, ref_x), (got_y, ref_y)):
        if name == "gaussian_blur" and 1.1 * s < 0.5:
            assert got <= s * ref
        else:
            assert abs(got - s * ref) <= 0.07 * s * ref, (got, s * ref)
    if name == "gaussian_blur":
        sigma, window = mitm.gaussian_params(s)
        assert sigma == pytest.approx(1.1 * s) and window == 2 * max(1, math.ceil(2 * s - 1e-9)) + 1
    else:
        k = blur_kernel(name, s)
        assert k.sum() == pytest.approx(1) and len(np.unique(k[k > 0])) == 1          # flat
        # taps = lattice points in the disk of radius 5 s: its area pi (5 s)^2 within the Gauss-circle error
        assert abs(np.count_nonzero(k) - math.pi * (5 * s) ** 2) <= 2 * math.pi * 5 * s


@pytest.mark.parametrize("name", mitm.SCALED_BLURS)
def test_scaled_blur_commutes_with_x2_downsampling(name, face):
    """Why the kernels scale: blurring at 112 px then downsampling x2 is (nearly) the same image as downsampling
    first and blurring with the kernel scaled by 1/2, so a chain's later steps blur the same part of the face;
    the literal kernel at 56 px blurs twice as much and is far from it."""
    rng = np.random.default_rng(0)
    blur = mitm.DEGRADATIONS[name]
    target = mitm.downsample2(blur(face, rng)).astype(np.float64)
    half = mitm.downsample2(face)
    scaled = np.abs(blur(half, rng, kernel_scale=0.5).astype(np.float64) - target)[4:-4, 4:-4].mean()
    literal = np.abs(blur(half, rng).astype(np.float64) - target)[4:-4, 4:-4].mean()
    assert scaled < 0.5 * literal, (scaled, literal)


def test_apply_chain_scales_kernels_by_the_current_width(face):
    chain = ("disk_blur", "motion_blur", "gaussian_blur")
    rng = np.random.default_rng(3)
    ref = mitm.gaussian_blur(mitm.downsample2(mitm.motion_blur(mitm.downsample2(mitm.disk_blur(face, rng)), rng,
                                                                kernel_scale=0.5)), rng, kernel_scale=0.25)
    np.testing.assert_array_equal(mitm.apply_chain(face, chain, 3, kernel_scaling="image"), ref)
    # the literal mode is the paper's text: Table 1's pixel sizes at every step
    rng = np.random.default_rng(3)
    lit = mitm.gaussian_blur(mitm.downsample2(mitm.motion_blur(mitm.downsample2(mitm.disk_blur(face, rng)), rng)), rng)
    np.testing.assert_array_equal(mitm.apply_chain(face, chain, 3, kernel_scaling="literal"), lit)
    # a reference of 224 px halves every kernel on a 112 px crop
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(mitm.apply_chain(face, ("disk_blur",), 3, kernel_scaling="image",
                                                   kernel_reference=224),
                                  mitm.disk_blur(face, rng, kernel_scale=0.5))
    # non-blur functions are untouched by the mode
    other = ("shear", "gaussian_noise", "patch_shuffle")
    np.testing.assert_array_equal(mitm.apply_chain(face, other, 5, kernel_scaling="image"),
                                  mitm.apply_chain(face, other, 5, kernel_scaling="literal"))
    with pytest.raises(ValueError, match="kernel_scaling"):
        mitm.apply_chain(face, chain, 0, kernel_scaling="pixels")
    with pytest.raises(ValueError, match="kernel_reference"):
        mitm.apply_chain(face, chain, 0, kernel_reference=0)
    with pytest.raises(ValueError, match="kernel_scale"):
        mitm.disk_blur(face, np.random.default_rng(0), kernel_scale=0)


# ------------------------------------------------------------------------------------- resolution matching

def test_match_resolution(face):
    np.testing.assert_array_equal(mitm.match_resolution(face, 28), degrade(face, 28))   # the SDK's F_up(F_down,28)
    small = mitm.apply_chain(face, ("shear", "shear", "shear"), 0)                       # 28 px hypothesis
    np.testing.assert_array_equal(mitm.match_resolution(small, 48),
                                  resize_bicubic(resize_bicubic(small, 48), 112))
    np.testing.assert_array_equal(mitm.match_resolution(small, 192), resize_bicubic(small, 112))
    assert mitm.match_resolution(face, 14).shape == (112, 112, 3)
    with pytest.raises(ValueError):
        mitm.match_resolution(face, 0)


# -------------------------------------------------------------------------------------- Sec. 3.3 probes

def test_blur_hypotheses(face):
    np.testing.assert_allclose(mitm.blur_sigmas(), np.linspace(0, 1, 16))
    lr = mitm.probe_lowres(face, 24)
    np.testing.assert_array_equal(lr, resize_bicubic(face, 24))
    hyps = mitm.blur_hypotheses(lr)
    assert hyps.shape == (16, 24, 24, 3) and hyps.dtype == np.uint8
    np.testing.assert_array_equal(hyps[0], lr)                 # sigma = 0: the probe itself
    energy = [hf_energy(h) for h in hyps]
    assert all(b <= a * 1.01 for a, b in zip(energy, energy[1:])) and energy[-1] < 0.6 * energy[0]


def test_probe_hypotheses_scales_and_sr_contract(face):
    lr = mitm.probe_lowres(face, 16)
    out = mitm.probe_hypotheses(lr, None, (2, 4), levels=3)
    assert out.shape == (2, 3, 112, 112, 3)
    blurred = mitm.blur_hypotheses(lr, 3)
    np.testing.assert_array_equal(out[1], resize_bicubic(resize_bicubic(blurred, 64), 112))
    calls = []

    def nearest_sr(crops, k):
        calls.append((crops.shape, k))
        return np.repeat(np.repeat(crops, k, 1), k, 2)

    out = mitm.probe_hypotheses(lr, nearest_sr, (2, 8), levels=4)
    assert calls == [((4, 16, 16, 3), 2), ((4, 16, 16, 3), 8)]
    np.testing.assert_array_equal(out[1, 0], resize_bicubic(np.repeat(np.repeat(lr, 8, 0), 8, 1), 112))
    with pytest.raises(ValueError, match="must return uint8"):
        mitm.probe_hypotheses(lr, lambda c, k: c, (2,), levels=2)


# -------------------------------------------------------------------------- eqs. 3-5, Fig. 4 on vectors

def test_correlation_similarity_is_pearson():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 64)), rng.normal(size=(7, 64)) + 3
    r = mitm.correlation_similarity(a, b)
    np.testing.assert_allclose(r, np.corrcoef(a, b)[:5, 5:], atol=1e-12)
    assert mitm.correlation_similarity(a[0], b[0]) == pytest.approx(np.corrcoef(a[0], b[0])[0, 1], abs=1e-12)
    np.testing.assert_allclose(mitm.correlation_similarity(a[0], b), np.corrcoef(a[0], b)[0, 1:], atol=1e-12)
    # by hand: a - mean = (-1, 0, 1), b - mean = (-4/3, -1/3, 5/3): r = 3 / (sqrt 2 * sqrt(42) / 3) = 9 / sqrt 84
    assert mitm.correlation_similarity([1, 2, 3], [1, 2, 4]) == pytest.approx(9 / math.sqrt(84))
    # invariant to offset and positive scale, unlike the cosine
    assert mitm.correlation_similarity(a[0] * 3 + 10, b[0]) == pytest.approx(mitm.correlation_similarity(a[0], b[0]))
    with pytest.raises(ValueError, match="constant"):
        mitm.correlation_similarity(np.ones(8), a[0, :8])
    with pytest.raises(ValueError):
        mitm.correlation_similarity(a, b[:, :10])


def test_template_fusion_by_hand():
    t = np.array([[[1.0, 2.0], [3.0, 4.0]], [[10.0, 20.0], [30.0, 40.0]]])
    np.testing.assert_array_equal(mitm.t_add(t), [44.0, 66.0])                     # eq. 4
    np.testing.assert_array_equal(mitm.t_concat(t), [4.0, 6.0, 40.0, 60.0])        # eq. 5
    s = np.array([[0.2, 0.9], [0.4, -0.1]])
    assert mitm.s_max(s) == 0.9 and mitm.s_add(s) == pytest.approx(0.35)
    np.testing.assert_allclose(mitm.s_max(s, axis=1), [0.9, 0.4])


# Zero-mean orthonormal u, v in R^3: a template at angle a is cos(a) u + sin(a) v, and the correlation of two
# such templates is cos(a - b) (already centred), so every fused score below is plain 2-D trigonometry.
U = np.array([1.0, -1.0, 0.0]) / math.sqrt(2)
V = np.array([1.0, 1.0, -2.0]) / math.sqrt(6)
P_DEG = [[0, 90], [0, 30]]          # probe: scale s, blur hypothesis m
G_DEG = [[60, 180], [90, 120]]      # gallery: matched to scale s, hypothesis n


def vec(deg):
    a = math.radians(deg)
    return math.cos(a) * U + math.sin(a) * V


def xy(deg):
    return np.array([math.cos(math.radians(deg)), math.sin(math.radians(deg))])


def cos2(p, q):
    return float(p @ q / np.linalg.norm(p) / np.linalg.norm(q))


@pytest.fixture()
def pg():
    return (np.array([[vec(d) for d in row] for row in P_DEG]), np.array([[vec(d) for d in row] for row in G_DEG]))


def test_score_fusions_by_hand(pg):
    p, g = pg
    c30, c60 = math.cos(math.pi / 6), 0.5
    # R[0] = [[cos60, cos180], [cos30, cos90]], R[1] = [[cos90, cos120], [cos60, cos90]]
    np.testing.assert_allclose(mitm.similarity_tensor(p, g), [[[c60, -1, ], [c30, 0]], [[0, -0.5], [0.5, 0]]],
                               atol=1e-12)
    assert mitm.fuse(p, g, "smax_sadd") == pytest.approx((c30 + 0.5) / 2)            # S_max, then S_add
    assert mitm.fuse(p, g, "smax_sadd", blur="add") == pytest.approx(((c60 + c30) / 2 + (0 + 0.5) / 2) / 2)
    assert mitm.fuse(p, g, "s_max") == pytest.approx(c30)
    assert mitm.fuse(p, g, "s_add") == pytest.approx((max((c60 - 1) / 2, c30 / 2) + max(-0.25, 0.25)) / 2)
    assert mitm.fuse_scores(mitm.similarity_tensor(p, g), "add", "add", "add") == pytest.approx(
        (c60 - 1 + c30 + 0 - 0.5 + 0.5) / 8)


def test_template_and_hybrid_fusions_by_hand(pg):
    p, g = pg
    tp = sum(xy(d) for row in P_DEG for d in row)
    tg = sum(xy(d) for row in G_DEG for d in row)
    assert mitm.fuse(p, g, "t_add") == pytest.approx(cos2(tp, tg))
    cp = np.concatenate([sum(xy(d) for d in row) for row in P_DEG])
    cg = np.concatenate([sum(xy(d) for d in row) for row in G_DEG])
    assert mitm.fuse(p, g, "t_concat") == pytest.approx(cos2(cp, cg))
    to_g = [cos2(tp, xy(d)) for row in G_DEG for d in row]
    assert mitm.fuse(p, g, "probe_t_add+s_max") == pytest.approx(max(to_g))
    assert mitm.fuse(p, g, "probe_t_add+s_add") == pytest.approx(np.mean(to_g))
    to_p = [cos2(xy(d), tg) for row in P_DEG for d in row]
    assert mitm.fuse(p, g, "gallery_t_add+s_max") == pytest.approx(max(to_p))
    assert mitm.fuse(p, g, "gallery_t_add+s_add") == pytest.approx(np.mean(to_p))
    with pytest.raises(ValueError, match="method"):
        mitm.fuse(p, g, "t_max")
    with pytest.raises(ValueError, match="same S and D"):
        mitm.fuse(p, g[:1], "t_add")


# ------------------------------------------------------------------------------------------ the matcher

def toy_embed(crops: np.ndarray) -> np.ndarray:
    """TEST DOUBLE for the matching math (not a face model): a fixed random projection of the 16 x 16 grey image."""
    grey = resize_bicubic(np.ascontiguousarray(crops.mean(axis=3).astype(np.uint8)[..., None]), 16)
    x = grey.reshape(len(crops), -1).astype(np.float64) / 255.0
    w = np.random.default_rng(1234).normal(size=(x.shape[1], 24))
    return (x - x.mean(axis=1, keepdims=True)) @ w


@pytest.fixture(scope="module")
def people(face) -> dict[str, np.ndarray]:
    from skimage import data

    out = {"astronaut": face}
    lfw = data.lfw_subset()
    for i in (0, 3, 7):
        grey = (lfw[i] * 255).astype(np.uint8)
        out[f"lfw{i}"] = np.ascontiguousarray(np.repeat(resize_bicubic(grey, 112)[..., None], 3, axis=2))
    return out


@pytest.fixture(scope="module")
def matcher(people):
    m = mitm.MitmMatcher(toy_embed, chains=mitm.sample_chains(6, seed=1), match_sizes=(28, 56), blur_levels=4)
    for name, crop in people.items():
        m.enroll(name, crop)
    return m


def test_gallery_templates_layout(matcher, people):
    t, s = matcher.gallery_templates(people["astronaut"])
    assert matcher.match_sizes == (28, 56, 112)
    assert t.shape == (7 * 3, 24) and t.dtype == np.float32     # (6 chains + original) x 3 sizes
    np.testing.assert_array_equal(s, np.repeat([28, 56, 112], 7))
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1, atol=1e-6)
    hyps = matcher.gallery_hypotheses(people["astronaut"])
    np.testing.assert_array_equal(hyps[0], people["astronaut"])
    want = toy_embed(np.stack([mitm.match_resolution(h, 56) for h in hyps]))
    np.testing.assert_allclose(t[s == 56], want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-5)
    t2, _ = matcher.gallery_templates(people["astronaut"])
    np.testing.assert_array_equal(t, t2)                            # enrolment is deterministic


def test_probe_templates_and_size_matching(matcher, people):
    probe = matcher.probe_templates(people["astronaut"], 12.4)
    assert probe.resolution == 12 and probe.scales == (2, 4, 8)
    assert probe.sizes == (28, 56, 112)          # 24 -> 28, 48 -> 56, 96 -> 112 (nearest in log)
    assert probe.templates.shape == (3, 4, 24)
    assert matcher.size_for(20) == 28 and matcher.size_for(500) == 112 and matcher.size_for(37) == 28


def test_vectorised_scores_equal_fuse(matcher, people):
    probe = matcher.probe_templates(degrade(people["lfw3"], 14), 14)
    gallery = {n: matcher._store[n] for n in matcher.identities}
    for method in mitm.FUSIONS:
        matcher.fusion = method
        try:
            fast = matcher.scores(probe)
            for name, (t, s) in gallery.items():
                assert fast[name] == pytest.approx(matcher.score(probe, t, s), abs=1e-9)
                g = np.stack([t[s == size] for size in probe.sizes])
                assert fast[name] == pytest.approx(mitm.fuse(probe.templates, g, method), abs=1e-9)
            assert matcher.scores(probe, gallery) == pytest.approx(fast)
        finally:
            matcher.fusion = "smax_sadd"


def test_identify_end_to_end(matcher, people):
    rng = np.random.default_rng(0)
    for name, crop in people.items():
        low = degrade(crop, 16)
        noisy = np.clip(low + rng.normal(0, 4, low.shape), 0, 255).astype(np.uint8)
        top = matcher.identify(noisy, 16, top_k=4)
        assert [n for n, _ in top][0] == name
        assert len(top) == 4 and top[0][1] >= top[1][1] >= top[3][1]


def test_matcher_errors(matcher, people):
    probe = matcher.probe_templates(people["astronaut"], 20)
    t, s = matcher._store["astronaut"]
    with pytest.raises(ValueError, match="lack match size"):
        matcher.score(probe, t[s != 56], s[s != 56])
    with pytest.raises(ValueError, match="D="):
        matcher.score(probe, t[:, :10], s)
    short = mitm.ProbeTemplates(probe.resolution, probe.scales, probe.sizes, probe.templates[..., :10])
    with pytest.raises(ValueError, match="D="):
        matcher.scores(short)
    with pytest.raises(TypeError):
        mitm.MitmMatcher("not callable")
    with pytest.raises(ValueError, match="fusion"):
        mitm.MitmMatcher(toy_embed, fusion="best")
    with pytest.raises(ValueError, match="embed returned"):
        mitm.MitmMatcher(lambda c: np.zeros(3), chains=[("shear",)]).gallery_templates(people["astronaut"])
    with pytest.raises(ValueError, match="resolution"):
        matcher.probe_templates(people["astronaut"], float("nan"))
    assert mitm.MitmMatcher(toy_embed).identify(people["astronaut"], 20) == []
    assert len(mitm.MitmMatcher(toy_embed).chains) == 1463


# ------------------------------------------------------------------------------------- ONNX SR runtime

def _channel_scaling_upsampler(path, k):
    """A tiny ONNX graph with the SR model's I/O: nearest x k upsampling that halves the R channel (so the
    colour order is visible). A stand-in for the runtime plumbing, not an SR model."""
    from onnx import TensorProto, helper, save

    nodes = [helper.make_node("Mul", ["lr", "gain"], ["scaled"]),
             helper.make_node("Resize", ["scaled", "", "scales"], ["sr"], mode="nearest")]
    inits = [helper.make_tensor("gain", TensorProto.FLOAT, [1, 3, 1, 1], [0.5, 1.0, 1.0]),
             helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, float(k), float(k)])]
    graph = helper.make_graph(nodes, "sr", [helper.make_tensor_value_info("lr", TensorProto.FLOAT,
                                                                          ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["n", 3, "H", "W"])], inits)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_onnx_super_resolver_io(tmp_path, face):
    for k in (2, 4):
        _channel_scaling_upsampler(tmp_path / f"sr_x{k}.onnx", k)
    sr = mitm.OnnxSuperResolver.from_dir(tmp_path, backend="onnxruntime")
    assert sr.scales == (2, 4)
    lr = np.stack([resize_bicubic(face, 20), resize_bicubic(face[:, ::-1].copy(), 20)])
    out = sr(lr, 4)
    want = np.repeat(np.repeat(lr, 4, 1), 4, 2)
    want[..., 2] = np.rint(want[..., 2] / 2)            # BGR: the model's R is our last channel
    assert out.shape == (2, 80, 80, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - want).max() <= 1
    np.testing.assert_array_equal(out[..., :2], want[..., :2])
    with pytest.raises(ValueError, match="no SR model for x8"):
        sr(lr, 8)
    with pytest.raises(FileNotFoundError):
        mitm.OnnxSuperResolver.from_dir(tmp_path / "nothing")
    m = mitm.MitmMatcher(toy_embed, sr, scales=(2, 4), chains=[("shear",)], blur_levels=2)
    assert m.probe_templates(face, 20).templates.shape == (2, 2, 24)


def test_mitm_runs_without_torch():
    import subprocess
    import sys
    from pathlib import Path

    script = """
import sys
for name in ("torch", "openvino", "onnx", "PIL", "skimage"):
    sys.modules[name] = None
import numpy as np
from crres_sdk import mitm
crops = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
embed = lambda c: c.reshape(len(c), -1)[:, ::997].astype(np.float32)
m = mitm.MitmMatcher(embed, chains=[("shear", "disk_blur")], match_sizes=(28,), blur_levels=2)
m.enroll("a", crops[0]); m.enroll("b", crops[1])
assert m.identify(crops[0], 30, 2)[0][0] == "a"
assert "torch" not in [k for k, v in sys.modules.items() if v is not None]
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
