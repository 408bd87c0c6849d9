"""Module behaviour: parameter trees, freezing, update/apply, repr, weights on disk (with errors
that name every bad key), train/eval, Dropout, initializers, nn.value_and_grad against MLX, and
modules inside the transforms and oxcore.compile."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox
from oxcore import nn, optim
from oxcore.tree import tree_items

from .conftest import np_of, to_mx


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.blocks = [nn.Linear(8, 8), {"norm": nn.LayerNorm(8)}]
        self.head = nn.Linear(8, 3, bias=False)
        self.scale = 2.0  # not a parameter
        self._buffer = ox.ones(3)  # private: not a parameter

    def __call__(self, ids):
        h = self.embed(ids)
        h = self.blocks[1]["norm"](ox.relu(self.blocks[0](h)))
        return self.head(h) * self.scale


def test_parameter_tree_names_and_freezing():
    net = Net()
    names = [k for k, _ in net.named_parameters()]
    assert names == ["blocks.0.bias", "blocks.0.weight", "blocks.1.norm.bias", "blocks.1.norm.weight",
                     "embed.weight", "head.weight"]
    net.freeze(keys="weight")
    assert [k for k, _ in tree_items(net.trainable_parameters())] == ["blocks.0.bias", "blocks.1.norm.bias"]
    net.unfreeze()
    net.embed.freeze()
    assert "embed.weight" not in dict(tree_items(net.trainable_parameters()))
    assert len(net.modules()) == 5 and [n for n, _ in net.named_modules()][:3] == ["", "blocks.0", "blocks.1.norm"]


def test_update_apply_and_repr():
    net = Net()
    net.update({"head": {"weight": ox.zeros((3, 8))}})
    assert np_of(net(ox.asarray([[1, 2]]))).tolist() == [[[0.0] * 3] * 2]
    net.apply(lambda p: p.astype(ox.float16))
    assert {p.dtype for _, p in net.named_parameters()} == {ox.float16}
    with pytest.raises(KeyError, match="the module has no parameter 'head.bias'"):
        net.update({"head": {"bias": ox.zeros(3)}})
    r = repr(net)
    assert r.startswith("Net(\n  (blocks.0): Linear(input_dims=8, output_dims=8, bias=True)")
    assert "(blocks.1.norm): LayerNorm(8, eps=1e-05, affine=True)" in r and "(head): Linear(" in r


@pytest.mark.parametrize("suffix", ["safetensors", "gguf"])
def test_save_and_load_weights_round_trip(tmp_path, suffix):
    if suffix == "gguf":
        pytest.importorskip("oxcore_io_gguf")
    a, b = Net(), Net()
    path = tmp_path / f"net.{suffix}"
    a.save_weights(path)
    b.load_weights(path)
    for (k, x), (k2, y) in zip(a.named_parameters(), b.named_parameters()):
        assert k == k2 and np.array_equal(np_of(x), np_of(y))


def test_load_weights_names_every_bad_key(tmp_path):
    net = Net()
    weights = dict(net.named_parameters())
    del weights["head.weight"], weights["embed.weight"]
    weights["extra.w"] = ox.ones(2)
    weights["blocks.0.bias"] = ox.ones(5)
    with pytest.raises(ValueError) as e:
        net.load_weights(weights)
    msg = str(e.value)
    assert "2 missing: embed.weight, head.weight" in msg and "1 unexpected: extra.w" in msg
    assert "1 mis-shaped: blocks.0.bias (model (8,), file (5,))" in msg
    before = np_of(net.blocks[0].weight)
    net.load_weights({"blocks.0.weight": ox.zeros((8, 8)), "extra.w": ox.ones(2)}, strict=False)
    assert np_of(net.blocks[0].weight).sum() == 0 and before.sum() != 0


def test_layers_name_themselves_in_shape_errors():
    with pytest.raises(ox.ShapeError, match=r"LayerNorm\(8, eps=1e-05, affine=True\): expected input of shape "
                                            r"\(\.\.\., 8\), got \(2, 4\)"):
        nn.LayerNorm(8)(ox.ones((2, 4)))
    with pytest.raises(ox.ShapeError, match=r"Embedding\(10, 4\): expected input of shape integer ids"):
        nn.Embedding(10, 4)(ox.ones((2,)))
    with pytest.raises(ox.ShapeError, match=r"MultiHeadAttention\(num_heads=2, num_kv_heads=2\).*queries "
                                            r"\(batch, seq, 8\), got \(3, 8\)"):
        nn.MultiHeadAttention(8, 2)(ox.ones((3, 8)))


def test_dropout_train_eval_and_seeds():
    x = ox.ones((4000,))
    a, b = nn.Dropout(0.25, seed=3), nn.Dropout(0.25, seed=3)
    ya, yb = np_of(a(x)), np_of(b(x))
    assert np.array_equal(ya, yb) and not np.array_equal(ya, np_of(a(x)))  # same seed, same masks; calls differ
    assert abs((ya == 0).mean() - 0.25) < 0.03 and np.allclose(ya[ya != 0], 1 / 0.75)
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    model.eval()
    assert not model.layers[1].training
    y = ox.random.normal((3, 4), seed=0)
    assert np.array_equal(np_of(model(y)), np_of(model.layers[0](y)))


def test_initializers_are_seeded_and_scaled():
    shape = (256, 128)
    for make, std in [(nn.init.glorot_normal(), (2 / 384) ** 0.5), (nn.init.he_normal(), (1 / 128) ** 0.5),
                      (nn.init.normal(0.5, 0.1), 0.1)]:
        a, b = np_of(make(shape, seed=4)), np_of(make(shape, seed=4))
        assert np.array_equal(a, b) and abs(a.std() - std) / std < 0.05
    u = np_of(nn.init.he_uniform()(shape, mode="fan_out", seed=1))
    assert np.abs(u).max() <= (3 / 256) ** 0.5 and np.abs(u).max() > 0.9 * (3 / 256) ** 0.5
    with pytest.raises(ValueError, match="Invalid mode: 'fan'. Valid modes are: fan_in, fan_out"):
        nn.init.he_normal()(shape, mode="fan")
    ox.random.seed(11)
    w1 = np_of(nn.Linear(5, 5).weight)
    ox.random.seed(11)
    assert np.array_equal(w1, np_of(nn.Linear(5, 5).weight))


def test_value_and_grad_matches_mlx():
    mx = pytest.importorskip("mlx.core")
    mnn = pytest.importorskip("mlx.nn")
    ours = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 4))
    theirs = mnn.Sequential(mnn.Linear(6, 16), mnn.GELU(), mnn.LayerNorm(16), mnn.Linear(16, 4))
    theirs.load_weights([(k, to_mx(v)) for k, v in ours.named_parameters()])
    ours.layers[2].freeze()
    theirs.layers[2].freeze()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 4, 8)
    loss, grads = nn.value_and_grad(ours, lambda x, y: nn.losses.cross_entropy(ours(x), y))(ox.asarray(x),
                                                                                           ox.asarray(y))
    mloss, mgrads = mnn.value_and_grad(theirs, lambda x, y: mnn.losses.cross_entropy(theirs(x), y, reduction="mean"))(
        mx.array(x), mx.array(y))
    np.testing.assert_allclose(loss.item(), mloss.item(), rtol=1e-6)
    from mlx.utils import tree_flatten
    want = dict(tree_flatten(mgrads))
    got = dict(tree_items(grads))
    assert sorted(got) == sorted(want) == ["layers.0.bias", "layers.0.weight", "layers.3.bias", "layers.3.weight"]
    for k in got:
        np.testing.assert_allclose(np_of(got[k]), np.array(want[k]), rtol=1e-5, atol=1e-6, err_msg=k)
    # the model still holds its own parameters afterwards
    assert all(not p.is_lazy or True for _, p in ours.named_parameters())
    opt = optim.SGD(0.5)
    before = np_of(ours.layers[0].weight)
    opt.update(ours, grads)
    np.testing.assert_allclose(np_of(ours.layers[0].weight), before - 0.5 * np_of(got["layers.0.weight"]), rtol=1e-6)


def test_module_is_a_pytree_for_grad_and_compile():
    model = nn.Linear(4, 2)
    x = ox.random.normal((5, 4), seed=0)
    g = ox.grad(lambda m: (m(x) ** 2).sum())(model)
    assert isinstance(g, nn.Linear) and g.weight.shape == (2, 4) and g is not model
    want = 2 * (np_of(model(x)).T @ np_of(x))
    np.testing.assert_allclose(np_of(g.weight), want, rtol=1e-5)
    opt = optim.Adam(1e-2)

    @ox.compile
    def step(params, state, x):
        def loss(p):
            model.update(p)
            return (model(x) ** 2).mean()
        value, grads = ox.value_and_grad(loss)(params)
        params, state = opt.apply(params, grads, state)
        return value, params, state
    params = model.trainable_parameters()
    state = opt.init(params)
    losses = []
    for i in range(6):
        v, params, state = step(params, state, ox.random.normal((5, 4), seed=i))
        losses.append(v.item())
    assert step.traces <= 2 and state["step"].item() == 6
