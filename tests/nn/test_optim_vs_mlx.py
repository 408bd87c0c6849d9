"""Optimizers and schedules against ``mlx.optimizers``: the same initial weights and the same
gradient sequence give the same 200-step trajectory within 1e-5 (float32)."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox
from oxcore import nn, optim

mx = pytest.importorskip("mlx.core")
mopt = pytest.importorskip("mlx.optimizers")

from .conftest import np_of  # noqa: E402

SHAPES = {"w": (4, 3), "layers": [(5,), (2, 3, 2)]}
STEPS = 200

# (name, oxcore factory, mlx factory): the same hyperparameters on both sides
CASES = [
    ("sgd", lambda: optim.SGD(0.05), lambda: mopt.SGD(0.05)),
    ("sgd-momentum-wd", lambda: optim.SGD(0.05, momentum=0.9, weight_decay=1e-2),
     lambda: mopt.SGD(0.05, momentum=0.9, weight_decay=1e-2)),
    ("sgd-nesterov", lambda: optim.SGD(0.05, momentum=0.8, nesterov=True),
     lambda: mopt.SGD(0.05, momentum=0.8, nesterov=True)),
    ("sgd-dampening", lambda: optim.SGD(0.05, momentum=0.9, dampening=0.3),
     lambda: mopt.SGD(0.05, momentum=0.9, dampening=0.3)),
    ("adam", lambda: optim.Adam(1e-2), lambda: mopt.Adam(1e-2)),
    ("adam-bias-correction", lambda: optim.Adam(1e-2, betas=(0.8, 0.95), bias_correction=True),
     lambda: mopt.Adam(1e-2, betas=[0.8, 0.95], bias_correction=True)),
    ("adamw", lambda: optim.AdamW(1e-2, weight_decay=0.05), lambda: mopt.AdamW(1e-2, weight_decay=0.05)),
    ("adamw-warmup-cosine",
     lambda: optim.AdamW(optim.join_schedules([optim.linear_schedule(0, 1e-2, 20), optim.cosine_decay(1e-2, 150)],
                                              [20]), bias_correction=True),
     lambda: mopt.AdamW(mopt.join_schedules([mopt.linear_schedule(0, 1e-2, 20), mopt.cosine_decay(1e-2, 150)],
                                            [20]), bias_correction=True)),
    ("adagrad", lambda: optim.Adagrad(0.1), lambda: mopt.Adagrad(0.1)),
    ("rmsprop", lambda: optim.RMSprop(1e-2, alpha=0.9), lambda: mopt.RMSprop(1e-2, alpha=0.9)),
    ("lion", lambda: optim.Lion(1e-3, weight_decay=0.1), lambda: mopt.Lion(1e-3, weight_decay=0.1)),
    ("sgd-step-decay", lambda: optim.SGD(optim.step_decay(0.1, 0.7, 30), momentum=0.5),
     lambda: mopt.SGD(mopt.step_decay(0.1, 0.7, 30), momentum=0.5)),
]


def _tree(rng: np.random.Generator, shapes):
    return {"w": rng.standard_normal(shapes["w"]).astype(np.float32),
            "layers": [rng.standard_normal(s).astype(np.float32) for s in shapes["layers"]]}


def _map(fn, t):
    return {"w": fn(t["w"]), "layers": [fn(x) for x in t["layers"]]}


def _flat(t):
    return [t["w"], *t["layers"]]


@pytest.mark.parametrize("name,make_ox,make_mx", CASES, ids=[c[0] for c in CASES])
def test_trajectory_matches_mlx(name, make_ox, make_mx):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    w0 = _tree(rng, SHAPES)
    grads = [_tree(rng, SHAPES) for _ in range(STEPS)]
    o, m = make_ox(), make_mx()
    p_ox, p_mx = _map(ox.asarray, w0), _map(mx.array, w0)
    state = o.init(p_ox)
    for i, g in enumerate(grads):
        p_ox, state = o.apply(p_ox, _map(ox.asarray, g), state)
        p_mx = m.apply_gradients(_map(mx.array, g), p_mx)
        if i % 20 == 19 or i == STEPS - 1:
            ox.eval(*_flat(p_ox), *[a for s in o.slots for a in state[s].values()])
            mx.eval(p_mx)
            for a, b in zip(_flat(p_ox), _flat(p_mx)):
                np.testing.assert_allclose(np_of(a), np.array(b), rtol=1e-5, atol=1e-5,
                                           err_msg=f"{name}: parameters differ from MLX at step {i + 1}")
    assert state["step"].item() == STEPS
    np.testing.assert_allclose(state["learning_rate"].item(), m.learning_rate.item(), rtol=1e-6)


@pytest.mark.parametrize("backend_name", ["metal_basic", "metal_fused"])
def test_adamw_on_mlx_backends_matches_cpu(backend_name):
    if backend_name not in ox.backends():
        pytest.skip(f"{backend_name} unavailable")
    rng = np.random.default_rng(3)
    w0, grads = _tree(rng, SHAPES), [_tree(rng, SHAPES) for _ in range(20)]
    out = {}
    for b in ("cpu_numpy", backend_name):
        o = optim.AdamW(optim.cosine_decay(1e-2, 20), bias_correction=True)
        p = _map(ox.asarray, w0)
        s = o.init(p)
        with ox.use(b):
            for g in grads:
                p, s = o.apply(p, _map(ox.asarray, g), s)
                ox.eval(*_flat(p), *[a for k in o.slots for a in s[k].values()], s["step"])  # one plan per step
            out[b] = [np_of(a) for a in _flat(p)]
    for a, c in zip(out["cpu_numpy"], out[backend_name]):
        np.testing.assert_allclose(c, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("schedule", [
    ("exponential_decay", (0.1, 0.97)), ("step_decay", (0.1, 0.9, 7)), ("cosine_decay", (0.3, 100, 0.01)),
    ("linear_schedule", (0.0, 0.2, 50)),
], ids=lambda s: s[0])
def test_schedules_equal_mlx(schedule):
    name, args = schedule
    ours, theirs = getattr(optim, name)(*args), getattr(mopt, name)(*args)
    steps = list(range(0, 260, 3))
    got = [ours(s).item() for s in steps]
    want = [theirs(mx.array(s, dtype=mx.uint64)).item() for s in steps]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_join_schedules_equal_mlx():
    ours = optim.join_schedules([optim.linear_schedule(0, 0.1, 10), optim.exponential_decay(0.1, 0.95),
                                 optim.cosine_decay(0.05, 40)], [10, 60])
    theirs = mopt.join_schedules([mopt.linear_schedule(0, 0.1, 10), mopt.exponential_decay(0.1, 0.95),
                                  mopt.cosine_decay(0.05, 40)], [10, 60])
    steps = list(range(0, 130))
    got = [ours(ox.asarray(s, dtype=ox.int64)).item() for s in steps]
    want = [theirs(mx.array(s, dtype=mx.uint64)).item() for s in steps]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_clip_grad_norm_matches_mlx():
    rng = np.random.default_rng(0)
    for max_norm in (0.5, 100.0):
        g = _tree(rng, SHAPES)
        ours, n1 = optim.clip_grad_norm(_map(ox.asarray, g), max_norm)
        theirs, n2 = mopt.clip_grad_norm(_map(mx.array, g), max_norm)
        np.testing.assert_allclose(n1.item(), n2.item(), rtol=1e-6)
        for a, b in zip(_flat(ours), _flat(theirs)):
            np.testing.assert_allclose(np_of(a), np.array(b), rtol=1e-6, atol=1e-7)


def test_bad_schedule_and_optimizer_arguments():
    with pytest.raises(ValueError, match="step_size must be at least 1"):
        optim.step_decay(0.1, 0.9, 0)
    with pytest.raises(ValueError, match="2 schedules need 1 boundaries, got 0"):
        optim.join_schedules([optim.linear_schedule(0, 1, 2)] * 2, [])
    with pytest.raises(ValueError, match=r"Adam beta1 must be in \[0, 1\), got 1.5"):
        optim.Adam(1e-3, betas=(1.5, 0.9))
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(0.1, nesterov=True)


def test_resumed_state_continues_bit_for_bit(tmp_path):
    rng = np.random.default_rng(7)
    w0, grads = _tree(rng, SHAPES), [_tree(rng, SHAPES) for _ in range(40)]
    sched = optim.join_schedules([optim.linear_schedule(0, 1e-2, 5), optim.cosine_decay(1e-2, 30)], [5])

    def run(o, p, gs):
        s = o.state or o.init(p)
        for g in gs:
            p, s = o.apply(p, _map(ox.asarray, g), s)
        o.state = s
        return p
    straight = run(optim.AdamW(sched, bias_correction=True), _map(ox.asarray, w0), grads)
    first = optim.AdamW(sched, bias_correction=True)
    half = run(first, _map(ox.asarray, w0), grads[:20])
    first.save(tmp_path / "opt.safetensors")
    ox.save(tmp_path / "params.safetensors", dict(ox.tree.tree_items(half)))
    second = optim.AdamW(sched, bias_correction=True).load(tmp_path / "opt.safetensors")
    assert second.step == 20
    loaded = ox.load(tmp_path / "params.safetensors")
    resumed = run(second, ox.tree.tree_from_items(list(loaded.items())), grads[20:])
    for a, b in zip(_flat(straight), _flat(resumed)):
        assert np.array_equal(np_of(a), np_of(b))


def test_update_refuses_frozen_and_non_float_parameters():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    model.layers[0].freeze()
    opt = optim.SGD(0.1)
    grads = {"layers": [{"weight": ox.ones((3, 3))}, {}]}
    with pytest.raises(ValueError, match=r"parameter 'layers.0.weight' is frozen; trainable parameters: "
                                         r"layers.1.bias, layers.1.weight"):
        opt.update(model, grads)
    with pytest.raises(TypeError, match=r"gradient 'w' is a str, not an Array"):
        opt.apply({"w": ox.ones(2)}, {"w": "nope"}, opt.init({"w": ox.ones(2)}))
    with pytest.raises(TypeError, match=r"parameter 'w' is int32; only floating-point"):
        opt.init({"w": ox.asarray([1, 2], dtype=ox.int32)})
