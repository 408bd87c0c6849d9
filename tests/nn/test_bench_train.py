"""``oxcore bench train``'s hand-written MLX and JAX models compute the same loss as the oxcore
models they are timed against (otherwise the rows would not compare the same work)."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox
from oxcore.cli.train import causal_lm, digits_mlp
from oxcore.nn import losses

mx = pytest.importorskip("mlx.core")
_lm_loss = pytest.importorskip("oxcore_metal_fused._bench_train")._lm_loss
_mlp_loss = pytest.importorskip("oxcore_metal_fused._bench_train")._mlp_loss

FNS = {"softmax": lambda t: mx.softmax(t, axis=-1), "gelu": lambda t: t * 0.5 * (1 + mx.erf(t / 2 ** 0.5)),
       "logsumexp": lambda t: mx.logsumexp(t, axis=-1),
       "take_along": lambda t, i: mx.take_along_axis(t, i[..., None], axis=-1)[..., 0]}


@pytest.mark.parametrize("kind", ["mlp", "lm"])
def test_reference_losses_equal_oxcore_models(kind):
    rng = np.random.default_rng(0)
    ox.random.seed(3)
    if kind == "mlp":
        model = digits_mlp(32)
        x, y = rng.random((8, 64)).astype(np.float32), rng.integers(0, 10, 8).astype(np.int32)
        ref = lambda P: _mlp_loss(mx, FNS, P, mx.array(x), mx.array(y))  # noqa: E731
    else:
        model = causal_lm(20, dims=32, heads=4, layers=2)
        x, y = rng.integers(0, 20, (2, 9)).astype(np.int32), rng.integers(0, 20, (2, 9)).astype(np.int32)
        ref = lambda P: _lm_loss(mx, FNS, P, mx.array(x), mx.array(y), 4, 2)  # noqa: E731
    ours = losses.cross_entropy(model(ox.asarray(x)), ox.asarray(y)).item()
    P = {k: mx.array(v.numpy()) for k, v in model.named_parameters()}
    np.testing.assert_allclose(ours, ref(P).item(), rtol=1e-5)
