"""Losses against float64 NumPy references on fresh random inputs (several shapes, float32 and
float64, every reduction), on every backend; and against mlx.nn.losses where MLX has the loss."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox
from oxcore.nn import losses

from .conftest import np_of

SHAPES = [(7, 5), (2, 3, 4)]
DTYPES = [np.float32, np.float64]


def _lse(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def _red(loss, reduction):
    return {"mean": loss.mean(), "sum": loss.sum(), "none": loss}[reduction]


def _check(got, want, dtype, reduction):
    got = np_of(got)
    assert got.shape == np.shape(want), f"shape: expected {np.shape(want)}, got {got.shape}"
    assert got.dtype == dtype, f"dtype: expected {dtype}, got {got.dtype}"
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=f"reduction={reduction}")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_variants(backend, shape, dtype, reduction):
    rng = np.random.default_rng(hash((shape, reduction)) % 2**32)
    C = shape[-1]
    logits = rng.standard_normal(shape) * 3
    t = rng.integers(0, C, shape[:-1])
    t[..., 0] = -1  # ignored in the ignore_index case
    w = rng.random(C) + 0.5
    lse = _lse(logits)
    safe = np.where(t < 0, 0, t)
    picked = np.take_along_axis(logits, safe[..., None], -1)[..., 0]
    L = ox.asarray(logits.astype(dtype))
    with ox.use(backend):
        # plain, through the op
        tt = np.where(t < 0, 1, t)
        plain = lse - np.take_along_axis(logits, tt[..., None], -1)[..., 0]
        _check(losses.cross_entropy(L, ox.asarray(tt), reduction=reduction), _red(plain, reduction), dtype, reduction)
        # label smoothing
        ls = lse - 0.9 * np.take_along_axis(logits, tt[..., None], -1)[..., 0] - 0.1 * logits.mean(-1)
        _check(losses.cross_entropy(L, ox.asarray(tt), label_smoothing=0.1, reduction=reduction),
               _red(ls, reduction), dtype, reduction)
        # class weights + ignore_index (PyTorch semantics: the mean divides by the weights counted)
        keep = (t >= 0).astype(np.float64)
        wl = (lse - picked) * w[safe] * keep
        want = wl.sum() / (w[safe] * keep).sum() if reduction == "mean" else _red(wl, reduction)
        _check(losses.cross_entropy(L, ox.asarray(t), weights=ox.asarray(w.astype(dtype)), ignore_index=-1,
                                    reduction=reduction), want, dtype, reduction)
        # probability targets
        p = rng.random(shape)
        p /= p.sum(-1, keepdims=True)
        _check(losses.cross_entropy(L, ox.asarray(p.astype(dtype)), reduction=reduction),
               _red(lse - (logits * p).sum(-1), reduction), dtype, reduction)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_elementwise_losses(backend, shape, dtype, reduction):
    rng = np.random.default_rng(hash((shape, str(dtype), reduction)) % 2**32)
    a, b = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
    t01 = rng.random(shape)
    probs = 1 / (1 + np.exp(-a))
    A, B, T = (ox.asarray(v.astype(dtype)) for v in (a, b, t01))
    e = np.abs(a - b)
    la, lb = a - _lse(a)[..., None], b - _lse(b)[..., None]
    cos_axis = 1
    num = (a * b).sum(cos_axis)
    den = np.maximum(np.sqrt((a * a).sum(cos_axis)) * np.sqrt((b * b).sum(cos_axis)), 1e-8)
    cases = {
        "mse": (losses.mse_loss(A, B, reduction=reduction), (a - b) ** 2),
        "l1": (losses.l1_loss(A, B, reduction=reduction), e),
        "huber": (losses.huber_loss(A, B, delta=0.7, reduction=reduction),
                  np.where(e <= 0.7, 0.5 * e ** 2, 0.7 * (e - 0.35))),
        "bce-logits": (losses.binary_cross_entropy(A, T, reduction=reduction), np.logaddexp(0, a) - a * t01),
        "bce-probs": (losses.binary_cross_entropy(ox.asarray(probs.astype(dtype)), T, with_logits=False,
                                                  reduction=reduction),
                      -(t01 * np.log(probs) + (1 - t01) * np.log1p(-probs))),
        "kl": (losses.kl_div_loss(ox.asarray(la.astype(dtype)), ox.asarray(lb.astype(dtype)), reduction=reduction),
               (np.exp(lb) * (lb - la)).sum(-1)),
        "cosine": (losses.cosine_similarity_loss(A, B, reduction=reduction), num / den),
    }
    with ox.use(backend):
        for name, (got, want) in cases.items():
            _check(got, _red(want, reduction), dtype, f"{name}, {reduction}")


def test_matches_mlx_losses():
    mx = pytest.importorskip("mlx.core")
    mloss = pytest.importorskip("mlx.nn.losses")
    rng = np.random.default_rng(0)
    logits, t = rng.standard_normal((6, 5)).astype(np.float32), rng.integers(0, 5, 6)
    a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    pairs = [
        (losses.cross_entropy(ox.asarray(logits), ox.asarray(t), label_smoothing=0.2, reduction="none"),
         mloss.cross_entropy(mx.array(logits), mx.array(t), label_smoothing=0.2)),
        (losses.binary_cross_entropy(ox.asarray(a), ox.asarray((b > 0).astype(np.float32)), reduction="sum"),
         mloss.binary_cross_entropy(mx.array(a), mx.array((b > 0).astype(np.float32)), reduction="sum")),
        (losses.huber_loss(ox.asarray(a), ox.asarray(b), delta=0.5), mloss.huber_loss(mx.array(a), mx.array(b), 0.5,
                                                                                      reduction="mean")),
        (losses.cosine_similarity_loss(ox.asarray(a), ox.asarray(b), reduction="none"),
         mloss.cosine_similarity_loss(mx.array(a), mx.array(b))),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(np_of(ours), np.array(theirs), rtol=1e-5, atol=1e-6)


def test_bad_loss_input_says_what_was_expected():
    with pytest.raises(ValueError, match="Invalid reduction: 'avg'. Valid values are: mean, sum, none"):
        losses.mse_loss(ox.ones(3), ox.ones(3), reduction="avg")
    with pytest.raises(ox.ShapeError, match=r"mse_loss: predictions \(3,\) and targets \(4,\)"):
        losses.mse_loss(ox.ones(3), ox.ones(4))
    with pytest.raises(ox.ShapeError, match=r"integer targets must have shape \(2,\)"):
        losses.cross_entropy(ox.ones((2, 3)), ox.asarray([[0, 1]]))
    with pytest.raises(ox.ShapeError, match=r"weights must have one entry per class, shape \(3,\)"):
        losses.cross_entropy(ox.ones((2, 3)), ox.asarray([0, 1]), weights=ox.ones(2))
