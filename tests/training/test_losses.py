"""Heads and losses against direct hand computations (plain Python loops / numpy, float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training import losses
from training.heads import AMSoftmax, ArcFace, CosFace, get_head
from training.wavelet import haar_ll

torch.set_num_threads(2)


def rand(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape))


# ---------------------------------------------------------------- hand references

def hand_cos(f, w):
    """(N, C) cosines by explicit loops."""
    f, w = np.asarray(f), np.asarray(w)
    out = np.zeros((len(f), len(w)))
    for i in range(len(f)):
        for j in range(len(w)):
            out[i, j] = sum(a * b for a, b in zip(f[i], w[j])) / (
                math.sqrt(sum(a * a for a in f[i])) * math.sqrt(sum(b * b for b in w[j])))
    return out


def hand_margin_logits(kind, f, w, labels, s, m):
    cos = hand_cos(f, w)
    logits = s * cos.copy()
    for i, y in enumerate(labels):
        c = cos[i, y]
        if kind == "arc":
            theta = math.acos(max(-1.0, min(1.0, c)))
            # ArcFace: cos(theta + m) while theta + m < pi; past that, the monotone fallback.
            logits[i, y] = s * (math.cos(theta + m) if theta + m < math.pi else c - m * math.sin(m))
        else:
            logits[i, y] = s * (c - m)
    return logits


def hand_ce(logits, labels):
    total = 0.0
    for row, y in zip(logits, labels):
        mx = max(row)
        lse = mx + math.log(sum(math.exp(v - mx) for v in row))
        total += lse - row[y]
    return total / len(labels)


def hand_cos_dist(a, b):
    return 1.0 - hand_cos([a], [b])[0, 0]


# ---------------------------------------------------------------- heads

@pytest.mark.parametrize("cls,kind,s,m", [(ArcFace, "arc", 64.0, 0.5), (CosFace, "cos", 48.0, 0.4),
                                          (AMSoftmax, "cos", 30.0, 0.35)])
def test_head_defaults_and_logits_match_hand_computation(cls, kind, s, m):
    head = cls(6, 5).double()
    assert (head.s, head.m) == (s, m)  # the papers' values (see heads.py)
    f = rand(4, 6, seed=1)
    labels = torch.tensor([0, 3, 4, 3])
    w = head.weight.detach().numpy()
    got = head(f, labels).detach().numpy()
    np.testing.assert_allclose(got, hand_margin_logits(kind, f.numpy(), w, labels.tolist(), s, m), atol=1e-9)
    # Without labels: plain scaled cosines (inference / distillation logits).
    np.testing.assert_allclose(head(f).detach().numpy(), s * hand_cos(f.numpy(), w), atol=1e-9)
    np.testing.assert_allclose(head.loss(f, labels).item(),
                               hand_ce(hand_margin_logits(kind, f.numpy(), w, labels.tolist(), s, m),
                                       labels.tolist()), rtol=1e-10)


def test_arcface_fallback_branch_when_theta_plus_m_exceeds_pi():
    head = ArcFace(3, 2, s=10.0, m=0.5).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-1.0, 0.1, 0.0], [0.0, 1.0, 0.0]]))
    f = torch.tensor([[1.0, 0.05, 0.0], [0.3, 1.0, 0.2]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    cos00 = hand_cos(f.numpy(), head.weight.detach().numpy())[0, 0]
    assert math.acos(cos00) + 0.5 > math.pi  # the case under test really is past the threshold
    got = head(f, labels).detach().numpy()
    np.testing.assert_allclose(got, hand_margin_logits("arc", f.numpy(), head.weight.detach().numpy(),
                                                       [0, 1], 10.0, 0.5), atol=1e-9)
    assert got[0, 0] == pytest.approx(10 * (cos00 - 0.5 * math.sin(0.5)))


def test_head_is_shareable_and_gradients_add_across_branches():
    head = get_head("amsoftmax", 8, 4).double()
    f1, f2 = rand(3, 8, seed=2), rand(3, 8, seed=3)
    y = torch.tensor([0, 1, 3])
    grads = []
    for f in (f1, f2):
        head.zero_grad()
        head.loss(f, y).backward()
        grads.append(head.weight.grad.clone())
    head.zero_grad()
    (head.loss(f1, y) + head.loss(f2, y)).backward()
    torch.testing.assert_close(head.weight.grad, grads[0] + grads[1])


def test_head_rejects_bad_input():
    head = get_head("arcface", 4, 3)
    with pytest.raises(ValueError):
        head(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        head(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(KeyError):
        get_head("sphereface", 4, 3)


# ---------------------------------------------------------------- Knoche et al.

def test_cosine_feature_distance_and_knoche_total():
    f_hr, f_lr, f_lr2 = rand(4, 5, seed=4), rand(4, 5, seed=5), rand(4, 5, seed=6)
    hand = np.mean([hand_cos_dist(a, b) for a, b in zip(f_hr.numpy(), f_lr.numpy())])
    assert losses.cosine_feature_distance(f_hr, f_lr).item() == pytest.approx(hand, rel=1e-12)
    # Scale invariance: the squared-norm reading of eq. 6 would fail this.
    assert losses.cosine_feature_distance(3 * f_hr, f_lr).item() == pytest.approx(hand, rel=1e-12)

    head = ArcFace(5, 3).double()
    y = torch.tensor([0, 2, 1, 2])
    w = head.weight.detach().numpy()
    ce = lambda f: hand_ce(hand_margin_logits("arc", f.numpy(), w, y.tolist(), 64.0, 0.5), y.tolist())
    out = losses.knoche_siamese_loss(head, f_hr, f_lr, y)
    assert out["loss"].item() == pytest.approx(ce(f_hr) + ce(f_lr) + 25 * hand, rel=1e-10)
    # ST-M2: one CE and one x25 distance per LR branch.
    hand2 = np.mean([hand_cos_dist(a, b) for a, b in zip(f_hr.numpy(), f_lr2.numpy())])
    out2 = losses.knoche_siamese_loss(head, f_hr, [f_lr, f_lr2], y)
    assert out2["loss"].item() == pytest.approx(
        ce(f_hr) + ce(f_lr) + ce(f_lr2) + 25 * (hand + hand2), rel=1e-10)


# ---------------------------------------------------------------- Ling et al.

def hand_logexp(x, y, p):
    d = len(x)
    return math.log(1 + sum(math.exp(abs(a - b) ** p) - 1 for a, b in zip(x, y))) / (p * d)


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_logexp_distance_matches_eq5(p):
    x, y = rand(3, 7, seed=7), rand(3, 7, seed=8)
    hand = np.mean([hand_logexp(a, b, p) for a, b in zip(x.numpy(), y.numpy())])
    assert losses.logexp_distance(x, y, p).item() == pytest.approx(hand, rel=1e-12)
    assert losses.logexp_distance(x, x, p).item() == 0.0


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_logexp_gradient_matches_eq4(p):
    n, d = 3, 6
    x = (0.3 * rand(n, d, seed=9)).requires_grad_(True)
    y = 0.3 * rand(n, d, seed=10)
    losses.logexp_distance(x, y, p).backward()
    expected = np.zeros((n, d))
    for r in range(n):
        err = [a - b for a, b in zip(x[r].tolist(), y[r].tolist())]
        denom = 1 + sum(math.exp(abs(e) ** p) - 1 for e in err)
        for i, e in enumerate(err):
            # Eq. 4 for p = 1: (1/D) * sign * e^{|d_i|} / (1 + sum(e^{|d|} - 1)); for general p the
            # chain rule adds p|d_i|^{p-1} and the 1/p of eq. 5 cancels it. 1/n: batch mean.
            expected[r, i] = (math.copysign(1.0, e) * abs(e) ** (p - 1) * math.exp(abs(e) ** p)
                              / (d * denom) / n)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-10)


def test_ling_total_loss_eq7():
    head = CosFace(5, 4).double()
    f_hr, f_lr = rand(4, 5, seed=11), rand(4, 5, seed=12)
    y = torch.tensor([3, 0, 1, 3])
    w = head.weight.detach().numpy()
    ce = lambda f: hand_ce(hand_margin_logits("cos", f.numpy(), w, y.tolist(), 48.0, 0.4), y.tolist())
    unit = lambda v: v / np.linalg.norm(v)
    dist = np.mean([hand_logexp(unit(a), unit(b), 2.0) for a, b in zip(f_hr.numpy(), f_lr.numpy())])
    out = losses.ling_loss(head, f_hr, f_lr, y, lam=1.5, p=2.0)
    assert out["dist"].item() == pytest.approx(dist, rel=1e-10)
    assert out["loss"].item() == pytest.approx(1.5 * dist + 0.5 * ce(f_hr) + 0.5 * ce(f_lr), rel=1e-10)



@pytest.mark.parametrize("p", [1.0, 2.0])
def test_lp_distance_is_table4_l1_l2(p):
    x, y = rand(3, 7, seed=13), rand(3, 7, seed=14)
    hand = np.mean([sum(abs(a - b) ** p for a, b in zip(u, v)) / (p * len(u)) for u, v in zip(x.numpy(), y.numpy())])
    assert losses.lp_distance(x, y, p).item() == pytest.approx(hand, rel=1e-12)
    head = CosFace(7, 4).double()
    labels = torch.tensor([0, 1, 3])
    lp = losses.ling_loss(head, x, y, labels, p=p, distance="lp")
    unit = lambda t: torch.nn.functional.normalize(t, dim=1)
    assert lp["dist"].item() == pytest.approx(losses.lp_distance(unit(x), unit(y), p).item(), rel=1e-12)
    with pytest.raises(ValueError, match="distance"):
        losses.ling_loss(head, x, y, labels, distance="l3")


# ---------------------------------------------------------------- Lai & Lam

def hand_triplet(feats, labels=None, margin=1.0):
    """Eq. 3-5 by loops: feats[k][i] = f_i^(k)."""
    k_count, n = len(feats), len(feats[0])
    labels = list(range(n)) if labels is None else labels
    total = 0.0
    for i in range(n):
        for k in range(k_count):
            pos = [hand_cos_dist(feats[k][i], feats[l][j]) for l in range(k_count) for j in range(n)
                   if labels[j] == labels[i] and (j, l) != (i, k)]
            neg = [hand_cos_dist(feats[k][i], feats[l][j]) for l in range(k_count) for j in range(n)
                   if labels[j] != labels[i]]
            total += max(0.0, margin + max(pos) - min(neg))
    return total / (n * k_count)


def test_cross_resolution_triplet_matches_eq3_to_6():
    feats = rand(4, 5, 6, seed=13)  # K=4 resolutions, N=5 samples
    hand = hand_triplet(feats.numpy())
    got = losses.cross_resolution_triplet_loss(feats)
    assert got.item() == pytest.approx(hand, rel=1e-12)
    assert got.item() > 0
    # List input and a different margin.
    assert losses.cross_resolution_triplet_loss(list(feats), margin=0.3).item() == pytest.approx(
        hand_triplet(feats.numpy(), margin=0.3), rel=1e-12)


def test_cross_resolution_triplet_with_repeated_identities():
    feats = rand(3, 6, 4, seed=14)
    labels = [0, 1, 0, 2, 1, 3]
    got = losses.cross_resolution_triplet_loss(feats, torch.tensor(labels))
    assert got.item() == pytest.approx(hand_triplet(feats.numpy(), labels), rel=1e-12)
    assert got.item() != pytest.approx(hand_triplet(feats.numpy()), rel=1e-6)


def test_cross_resolution_triplet_is_zero_for_separated_identities():
    # Each sample identical at every resolution (p = 0), samples mutually orthogonal (n = 1):
    # max(0, 1 + 0 - 1) = 0; pulling one LR copy away makes it positive.
    base = torch.eye(4, dtype=torch.float64)
    feats = base.repeat(3, 1, 1)
    assert losses.cross_resolution_triplet_loss(feats).item() == pytest.approx(0.0, abs=1e-12)
    feats[2, 0] = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    assert losses.cross_resolution_triplet_loss(feats).item() == pytest.approx(
        hand_triplet(feats.numpy()), rel=1e-12)
    assert losses.cross_resolution_triplet_loss(feats).item() > 0


def test_lai_total_loss_eq2_and_eq7():
    head = AMSoftmax(6, 5).double()
    feats = rand(4, 3, 6, seed=15)
    y = torch.tensor([4, 1, 2])
    w = head.weight.detach().numpy()
    cls = np.mean([hand_ce(hand_margin_logits("cos", f, w, y.tolist(), 30.0, 0.35), y.tolist())
                   for f in feats.numpy()])
    out = losses.lai_loss(head, feats, y)
    assert out["cls"].item() == pytest.approx(cls, rel=1e-10)
    assert out["loss"].item() == pytest.approx(cls + hand_triplet(feats.numpy()), rel=1e-10)


def test_triplet_rejects_degenerate_batches():
    with pytest.raises(ValueError):
        losses.cross_resolution_triplet_loss(torch.randn(1, 4, 3))
    with pytest.raises(ValueError):
        losses.cross_resolution_triplet_loss(torch.randn(2, 1, 3))


# ---------------------------------------------------------------- Lu & Ebrahimi

def hand_kd(z_h, z_l, t):
    total = 0.0
    for a, b in zip(z_h, z_l):
        pa = np.exp(np.asarray(a) / t) / np.exp(np.asarray(a) / t).sum()
        pb = np.exp(np.asarray(b) / t) / np.exp(np.asarray(b) / t).sum()
        total += t * t * sum(p * math.log(p / q) for p, q in zip(pa, pb))
    return total / len(z_h)


def hand_haar_ll(x):
    n, c, h, w = x.shape
    out = np.zeros((n, c, h // 2, w // 2))
    for a in range(n):
        for b in range(c):
            for i in range(h // 2):
                for j in range(w // 2):
                    blk = x[a, b, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                    # Orthonormal Haar: (1/sqrt2)^2 * sum of the 2x2 block.
                    out[a, b, i, j] = blk.sum() / 2.0
    return out


def test_haar_ll_matches_hand_and_preserves_energy_of_smooth_input():
    x = rand(2, 3, 6, 4, seed=16)
    np.testing.assert_allclose(haar_ll(x).numpy(), hand_haar_ll(x.numpy()), rtol=1e-12)
    const = torch.full((1, 1, 4, 4), 3.0, dtype=torch.float64)
    # An orthonormal transform keeps all energy of a constant image in LL.
    assert haar_ll(const).square().sum().item() == pytest.approx(const.square().sum().item())


def test_kd_loss_eq2():
    z_h, z_l = 3 * rand(4, 6, seed=17), 3 * rand(4, 6, seed=18)
    for t in (1.0, 4.0):
        assert losses.kd_loss(z_h, z_l, t).item() == pytest.approx(hand_kd(z_h.numpy(), z_l.numpy(), t), rel=1e-10)
    assert losses.kd_loss(z_h, z_h.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-12)
    # The direction matters: KL(teacher || student), not the reverse.
    assert losses.kd_loss(z_h, z_l, 2.0).item() != pytest.approx(hand_kd(z_l.numpy(), z_h.numpy(), 2.0), rel=1e-6)
    z_h.requires_grad_(True)
    z_l.requires_grad_(True)
    losses.kd_loss(z_h, z_l, 2.0).backward()
    assert z_h.grad is None and z_l.grad is not None  # the teacher is not trained by KD


def test_kd_loss_t_squared_keeps_the_high_temperature_limit():
    """Eq. 2's T^2 (Hinton et al. Sec. 2.1): for large T, T^2 KL -> 1/(2C) sum_c (d_c - mean d)^2 with
    d = z_L - z_H, independent of T; without the T^2 the loss would fall as 1/T^2."""
    z_h, z_l = rand(5, 7, seed=50), rand(5, 7, seed=51)
    d = (z_l - z_h).numpy()
    limit = (((d - d.mean(axis=1, keepdims=True)) ** 2).sum(axis=1) / (2 * d.shape[1])).mean()
    for t in (50.0, 200.0):
        assert losses.kd_loss(z_h, z_l, t).item() == pytest.approx(limit, rel=3e-2)
    # Adding a constant to a row of logits changes no softmax: the loss sees only logit differences.
    assert losses.kd_loss(z_h, z_l + 5.0, 4.0).item() == pytest.approx(losses.kd_loss(z_h, z_l, 4.0).item())


def _impostor_cos(f, y):
    u = torch.nn.functional.normalize(f, dim=1)
    cos = u @ u.T
    return cos[y[:, None] != y[None, :]].mean().item()


def test_kd_through_a_cosine_head_transfers_the_teacher_geometry_and_does_not_collapse_it():
    """What frozen_kd optimises: the student's logits s * cos(f_L, W) against the teacher's s * cos(f_H, W),
    T = 4 (dlib_lu_kd). A student that matches the teacher gets no gradient; a student started collapsed (all
    embeddings near one direction) is pushed back out to the teacher's angular spread, and a spread-out student
    with a narrow-cone teacher is pulled in to the teacher's cone: KD transfers the teacher's geometry, so a
    narrow cone after training is the teacher's (issue 17: dlib's own embeddings form one), not a KD artefact."""
    g = torch.Generator().manual_seed(0)
    c, d, per = 6, 8, 3
    y = torch.arange(c).repeat_interleave(per)

    def run(w, f_teacher, f_start, steps=100):
        head = ArcFace(d, c).double()
        with torch.no_grad():
            head.weight.copy_(w)
        head.requires_grad_(False)
        z_h = head(f_teacher)
        f = f_start.clone().requires_grad_(True)
        opt = torch.optim.SGD([f], lr=0.2)
        for _ in range(steps):
            opt.zero_grad()
            losses.kd_loss(z_h, head(f), 4.0).backward()
            opt.step()
        return f.detach()

    # Spread-out teacher: orthogonal class centres, samples near their centre.
    w = torch.eye(c, d, dtype=torch.float64)
    f_t = w[y] + 0.05 * torch.randn(len(y), d, generator=g, dtype=torch.float64)
    head = ArcFace(d, c).double()
    with torch.no_grad():
        head.weight.copy_(w)
    f = f_t.clone().requires_grad_(True)
    losses.kd_loss(head(f_t), head(f), 4.0).backward()
    assert f.grad.abs().max().item() < 1e-12                     # matched student: a fixed point
    collapsed = w.mean(0) + 0.01 * torch.randn(len(y), d, generator=g, dtype=torch.float64)
    assert _impostor_cos(collapsed, y) > 0.99
    out = run(w, f_t, collapsed)
    assert _impostor_cos(out, y) < 0.2                           # spread restored (teacher: ~0)

    # Narrow-cone teacher (dlib-like: class centres within ~0.85 cosine of each other): KD pulls a spread-out
    # student into the cone, to the teacher's spread.
    axis = torch.zeros(d, dtype=torch.float64)
    axis[-1] = 1.0
    w_cone = 2.5 * axis + torch.eye(c, d, dtype=torch.float64)
    f_cone = w_cone[y] + 0.05 * torch.randn(len(y), d, generator=g, dtype=torch.float64)
    assert _impostor_cos(f_cone, y) > 0.8
    assert _impostor_cos(f_t, y) < 0.1
    out = run(w_cone, f_cone, f_t.clone(), steps=200)
    assert abs(_impostor_cos(out, y) - _impostor_cos(f_cone, y)) < 0.1   # pulled into the teacher's cone


def test_wavelet_similarity_loss_eq3():
    shapes = [(2, 3, 8, 8), (2, 4, 4, 4), (2, 5, 2, 2)]
    zh = [rand(*s, seed=20 + i) for i, s in enumerate(shapes)]
    zl = [rand(*s, seed=30 + i) for i, s in enumerate(shapes)]
    diffs = [hand_haar_ll(a.numpy()) - hand_haar_ll(b.numpy()) for a, b in zip(zh, zl)]
    hand_mean = sum((d ** 2).mean() for d in diffs[:2])  # stages 1-2 only
    hand_sum = sum((d ** 2).sum() for d in diffs[:2])
    assert losses.wavelet_similarity_loss(zh, zl).item() == pytest.approx(hand_mean, rel=1e-12)
    assert losses.wavelet_similarity_loss(zh, zl, reduction="sum").item() == pytest.approx(hand_sum, rel=1e-12)
    with pytest.raises(ValueError):
        losses.wavelet_similarity_loss(zh, [zl[1], zl[0]])


def test_lu_total_loss_eq4():
    head = ArcFace(6, 5).double()
    f_lr = rand(3, 6, seed=40)
    y = torch.tensor([1, 4, 0])
    z_hr = 10 * rand(3, 5, seed=41)
    zh = [rand(3, 2, 4, 4, seed=42), rand(3, 2, 2, 2, seed=43)]
    zl = [rand(3, 2, 4, 4, seed=44), rand(3, 2, 2, 2, seed=45)]
    w = head.weight.detach().numpy()
    arc = hand_ce(hand_margin_logits("arc", f_lr.numpy(), w, y.tolist(), 64.0, 0.5), y.tolist())
    kd = hand_kd(z_hr.numpy(), 64.0 * hand_cos(f_lr.numpy(), w), 4.0)
    ws = sum(((hand_haar_ll(a.numpy()) - hand_haar_ll(b.numpy())) ** 2).mean() for a, b in zip(zh, zl))
    out = losses.lu_loss(head, f_lr, y, z_hr, zh, zl, temperature=4.0)
    assert out["loss"].item() == pytest.approx(arc + 1.0 * kd + 0.05 * ws, rel=1e-10)
    assert out["wavesim"].item() == pytest.approx(ws, rel=1e-10)


# ---------------------------------------------------------------- the recipes on real models

def test_each_recipe_loss_trains_a_real_backbone_end_to_end():
    """The four totals on actual model outputs: finite, and gradients reach backbone and head."""
    from training import degradations as dg
    from training.models import get_model

    torch.manual_seed(0)
    y = torch.tensor([0, 1, 2])
    x = torch.rand(3, 3, 112, 112)
    x_lr = dg.degrade(x, 14)
    net = get_model("mobilefacenet", num_features=32)
    for name, make in {
        "knoche": lambda h: losses.knoche_siamese_loss(h, net(x), net(x_lr), y),
        "ling": lambda h: losses.ling_loss(h, net(x), net(x_lr), y),
        "lai": lambda h: losses.lai_loss(h, [net(x), net(x_lr), net(dg.degrade(x, 8))], y),
    }.items():
        head = get_head({"knoche": "arcface", "ling": "cosface", "lai": "amsoftmax"}[name], 32, 5)
        net.zero_grad()
        out = make(head)
        assert torch.isfinite(out["loss"]), name
        out["loss"].backward()
        assert head.weight.grad.abs().sum() > 0 and net.stage1[0].layers[0].weight.grad.abs().sum() > 0, name

    # Lu & Ebrahimi: HR IResNet teacher, LR WaveResNet student with identical stage shapes.
    teacher, student = get_model("iresnet18", num_features=32).eval(), get_model("waveresnet18", num_features=32)
    t_head, s_head = ArcFace(32, 5), ArcFace(32, 5)
    with torch.no_grad():
        f_t, st_t = teacher(x, return_stages=True)
        z_t = t_head(f_t)
    f_s, st_s = student(x_lr, return_stages=True)
    out = losses.lu_loss(s_head, f_s, y, z_t, st_t, st_s, temperature=4.0)
    assert torch.isfinite(out["loss"]) and out["wavesim"] > 0
    out["loss"].backward()
    assert student.conv1.weight.grad.abs().sum() > 0 and teacher.conv1.weight.grad is None
