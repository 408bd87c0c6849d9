"""The transforms as a user calls them: pytrees, argnums, aux, composition, compile, custom
rules, checkpoint, memory, and the errors for bad use. References are float64 NumPy."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import oxcore as ox
from oxcore.extend import REGISTRY, Category, register_op, same_as_input

BACKENDS = [b for b in ("cpu_numpy", "metal_basic", "metal_fused") if b in ox.backends()]


def rnd(seed, *shape, lo=-1.0, hi=1.0, dtype=np.float32):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(dtype)


def close(got, want, tol=1e-5):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=tol, atol=tol)


# --- pytrees, argnums, aux ---------------------------------------------------------------------------
@pytest.mark.parametrize("shapes", [((3,), (2, 3)), ((1, 4), (5, 1)), ((), (2, 2))])
def test_broadcasting_binary_grads(shapes):
    a, b = rnd(0, *shapes[0]), rnd(1, *shapes[1], lo=0.5, hi=2.0)
    ga, gb = ox.grad(lambda x, y: (x * y + x / y - y ** 2).sum(), argnums=(0, 1))(ox.asarray(a), ox.asarray(b))
    A, B = np.broadcast_arrays(a.astype(np.float64), b.astype(np.float64))
    want_a = (B + 1 / B).reshape(A.shape)
    want_b = A - A / B ** 2 - 2 * B
    close(ga.numpy(), want_a.sum(axis=tuple(range(A.ndim - a.ndim))).reshape(a.shape) if a.ndim < A.ndim
          else np.sum(want_a, axis=tuple(i for i, d in enumerate(a.shape) if d == 1 and A.shape[i] > 1),
                      keepdims=True), 1e-4)
    red = tuple(range(A.ndim - b.ndim)) + tuple(A.ndim - b.ndim + i for i, d in enumerate(b.shape) if d == 1 and A.shape[A.ndim - b.ndim + i] > 1)
    close(gb.numpy(), want_b.sum(axis=red).reshape(b.shape), 1e-4)
    assert ga.shape == a.shape and gb.shape == b.shape


def test_pytree_params_argnums_and_aux():
    w = {"layers": [ox.asarray(rnd(0, 3, 4)), ox.asarray(rnd(1, 4))], "scale": ox.asarray(np.float32(2.0))}
    x = ox.asarray(rnd(2, 5, 3))

    def loss(p, x):
        h = ox.tanh(x @ p["layers"][0] + p["layers"][1]) * p["scale"]
        return (h ** 2).mean(), h.shape

    (val, aux), g = ox.value_and_grad(loss, has_aux=True)(w, x)
    assert aux == (5, 4) and isinstance(g, dict) and isinstance(g["layers"], list)
    X, W0, b, s = (a.numpy().astype(np.float64) for a in (x, w["layers"][0], w["layers"][1], w["scale"]))
    t = np.tanh(X @ W0 + b)
    dh = 2 * t * s / t.size * s * (1 - t * t)
    close(val.item(), ((t * s) ** 2).mean())
    close(g["layers"][0].numpy(), X.T @ dh, 1e-4)
    close(g["layers"][1].numpy(), dh.sum(0), 1e-4)
    close(g["scale"].numpy(), (2 * t * t * s).sum() / t.size, 1e-4)
    gx = ox.grad(lambda p, x: loss(p, x)[0], argnums=1)(w, x)
    assert gx.shape == (5, 3)


def test_grad_of_grad_and_jvp_of_grad():
    x = rnd(3, 6, lo=0.2, hi=1.5)
    f = lambda v: (ox.sin(v) * v ** 3).sum()  # noqa: E731
    d2 = ox.grad(lambda v: ox.grad(f)(v).sum())(ox.asarray(x))
    X = x.astype(np.float64)
    # d/dx of f'(x) = sin x * x^3 -> f''(x) summed per element
    f1 = lambda X: np.cos(X) * X ** 3 + 3 * X ** 2 * np.sin(X)  # noqa: E731
    f2 = -np.sin(X) * X ** 3 + 6 * X ** 2 * np.cos(X) + 6 * X * np.sin(X)
    close(d2.numpy(), f2, 1e-4)
    v = rnd(4, 6)
    _, hvp = ox.jvp(ox.grad(f), (ox.asarray(x),), (ox.asarray(v),))
    close(hvp.numpy(), f2 * v, 1e-4)
    close(ox.grad(f)(ox.asarray(x)).numpy(), f1(X), 1e-4)


def test_second_order_matmul_softmax_reduction():
    w, x = rnd(5, 4, 3), rnd(6, 2, 4)

    def loss(w):
        return (ox.softmax(ox.asarray(x) @ w, axis=-1) ** 2).sum()

    # Hessian-vector product two ways: jvp of grad and grad of <grad, v>
    v = rnd(7, 4, 3)
    _, hv1 = ox.jvp(ox.grad(loss), (ox.asarray(w),), (ox.asarray(v),))
    hv2 = ox.grad(lambda w: (ox.grad(loss)(w) * ox.asarray(v)).sum())(ox.asarray(w))
    close(hv1.numpy(), hv2.numpy(), 1e-4)
    # against finite differences of the gradient in float64
    def g64(W):
        z = x.astype(np.float64) @ W
        e = np.exp(z - z.max(-1, keepdims=True)); s = e / e.sum(-1, keepdims=True)
        gs = 2 * s
        gz = s * (gs - (gs * s).sum(-1, keepdims=True))
        return x.astype(np.float64).T @ gz
    h = 1e-6
    fd = (g64(w.astype(np.float64) + h * v) - g64(w.astype(np.float64) - h * v)) / (2 * h)
    close(hv1.numpy(), fd, 1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_compile_value_and_grad_and_vmap_grad(backend):
    w, x, y = rnd(8, 4, 3), rnd(9, 16, 4), rnd(10, 16, 3)
    loss = lambda w, x, y: ((ox.tanh(x @ w) - y) ** 2).mean()  # noqa: E731
    step = ox.compile(ox.value_and_grad(loss))
    with ox.use(backend):
        args = [ox.asarray(a) for a in (w, x, y)]
        lazy_v, lazy_g = ox.value_and_grad(loss)(*args)
        for _ in range(3):
            v, g = step(*args)
        close(v.item(), lazy_v.item(), 1e-6)
        close(g.numpy(), lazy_g.numpy(), 1e-6)
        assert step.traces == 1
        per = ox.vmap(ox.grad(lambda w, x, y: ((ox.tanh(x @ w) - y) ** 2).sum()), in_axes=(None, 0, 0))(*args)
        loop = [ox.grad(lambda w, x, y: ((ox.tanh(x @ w) - y) ** 2).sum())(args[0], args[1][i], args[2][i])
                for i in range(16)]
        close(per.numpy(), np.stack([l.numpy() for l in loop]), 1e-5)
        close(per.numpy().mean(0) / 3, lazy_g.numpy(), 1e-5)  # mean over 16x3 outputs


def test_value_read_inside_the_function_keeps_the_gradient():
    seen = []

    def f(x):
        y = ox.exp(x)
        seen.append(float(y.sum()))  # evaluates mid-function
        return (y * x).sum()

    x = rnd(11, 5)
    g = ox.grad(f)(ox.asarray(x))
    close(g.numpy(), np.exp(x) * (1 + x), 1e-5)
    assert seen and abs(seen[0] - np.exp(x).sum()) < 1e-4


def test_assigning_into_an_argument_inside_the_function():
    def f(x):
        x[0] = x[0] * 3.0  # rebinds the function's handle only
        return (x * x).sum()

    a = ox.asarray(rnd(12, 4))
    before = a.numpy().copy()
    g = ox.grad(f)(a)
    want = 2 * before
    want[0] *= 9
    close(g.numpy(), want, 1e-5)
    close(a.numpy(), before)


def test_integer_outputs_and_non_differentiable_paths_give_zeros():
    x = ox.asarray(rnd(13, 5))
    g = ox.grad(lambda x: (x * (x > 0).astype(ox.float32)).sum() + ox.floor(x).sum())(x)
    close(g.numpy(), (x.numpy() > 0).astype(np.float32))
    out, back = ox.vjp(lambda x: ox.argmax(x), x)
    (gx,) = back(ox.asarray(np.int64(1)))
    close(gx.numpy(), np.zeros(5))
    close(ox.grad(lambda x: (x * ox.stop_gradient(x)).sum())(x).numpy(), x.numpy())


def test_take_and_indexing_gradients_accumulate_repeats():
    w = ox.asarray(rnd(14, 4, 3))
    ids = ox.asarray(np.array([[0, 2], [2, 2]]))
    g = ox.grad(lambda w: (ox.embedding(w, ids) * 2.0).sum())(w)
    close(g.numpy(), np.array([[2] * 3, [0] * 3, [6] * 3, [0] * 3], np.float32))
    g2 = ox.grad(lambda w: w[ox.asarray(np.array([1, 1, 3])), 1:].sum())(w)
    want = np.zeros((4, 3)); want[1, 1:] = 2; want[3, 1:] = 1
    close(g2.numpy(), want)


def test_custom_vjp_custom_jvp_and_checkpoint():
    @ox.custom_vjp
    def clipped_identity(x):
        return x

    clipped_identity.defvjp(lambda x: (x, None), lambda res, g: (ox.clip(g, -1.0, 1.0),))
    x = ox.asarray(np.array([1.0, 2.0], np.float32))
    close(ox.grad(lambda x: (clipped_identity(x) * ox.asarray(np.array([0.5, 5.0], np.float32))).sum())(x).numpy(),
          [0.5, 1.0])

    @ox.custom_jvp
    def softplus(x):
        return ox.logaddexp(x, 0.0)

    softplus.defjvp(lambda p, t: (softplus.fn(*p), t[0] * ox.sigmoid(p[0])))
    v = rnd(15, 6, lo=-3, hi=3)
    close(ox.grad(lambda x: softplus(x).sum())(ox.asarray(v)).numpy(), 1 / (1 + np.exp(-v)), 1e-5)
    _, t = ox.jvp(softplus, (ox.asarray(v),), (ox.ones(6),))
    close(t.numpy(), 1 / (1 + np.exp(-v)), 1e-5)

    block = lambda x, w: ox.tanh(x @ w) @ w.T  # noqa: E731
    ck = ox.checkpoint(block)
    xs, ws = ox.asarray(rnd(16, 3, 4)), ox.asarray(rnd(17, 4, 4))
    g1 = ox.grad(lambda x, w: (block(x, w) ** 2).sum(), argnums=(0, 1))(xs, ws)
    g2 = ox.grad(lambda x, w: (ck(x, w) ** 2).sum(), argnums=(0, 1))(xs, ws)
    # NOTE: recomputed, not kept: the checkpointed backward holds a second tanh
    assert sum(p.op == "tanh" for p in ox.explain(g2[1]).nodes) == 2
    assert sum(p.op == "tanh" for p in ox.explain(g1[1]).nodes) == 1
    for a, b in zip(g1, g2):
        close(a.numpy(), b.numpy(), 1e-5)


def _live() -> tuple[int, int]:
    """(graph nodes alive, bytes of the buffers they hold)."""
    from oxcore._registry import Node

    gc.collect()
    nodes = [o for o in gc.get_objects() if type(o) is Node]
    return len(nodes), sum(getattr(n.buf, "nbytes", 0) for n in nodes if n.buf is not None)


@pytest.mark.parametrize("compiled, steps", [(False, 300), (True, 1000)])
def test_constant_memory_over_steps(compiled, steps):
    """A 16-layer MLP trained by SGD: the nodes alive and the bytes they hold are the same at
    the end as a third of the way in, and no step's graph outlives it (lazy: the graph is
    rebuilt each step; compiled: replayed)."""
    rng = np.random.default_rng(0)
    ws = [ox.asarray((rng.standard_normal((16, 16)) / 4).astype(np.float32)) for _ in range(16)]
    x, y = ox.asarray(rnd(18, 8, 16)), ox.asarray(rnd(19, 8, 16))

    def loss(ws):
        h = x
        for w in ws:
            h = ox.tanh(h @ w)
        return ((h - y) ** 2).mean()

    def sgd(ws):
        val, gs = ox.value_and_grad(loss)(ws)
        return val, [w - 0.1 * g for w, g in zip(ws, gs)]

    step = ox.compile(sgd) if compiled else sgd
    probes = []
    for i in range(steps):
        val, ws = step(ws)
        ox.eval(val, *ws)
        if i == 10:
            probes.append(weakref.ref(ws[0]._node))
        if i == steps // 3:
            base = _live()
    end = _live()
    assert end == base, f"after {steps} steps: (nodes, bytes) alive went from {base} to {end}"
    assert all(p() is None for p in probes), "a step's graph outlived it"
    assert val.item() < 1.0


# --- errors -------------------------------------------------------------------------------------------
def test_errors_for_bad_use():
    x = ox.asarray(rnd(20, 3))
    with pytest.raises(ox.DifferentiationError, match="0-d floating-point"):
        ox.grad(lambda x: x * 2)(x)
    with pytest.raises(ox.DifferentiationError, match="int32"):
        ox.grad(lambda x: x.sum())(ox.asarray(np.array([1, 2], np.int32)))
    with pytest.raises(ox.DifferentiationError, match="integer"):
        ox.grad(lambda x: x * 1.0)(3)
    with pytest.raises(ox.DifferentiationError, match="out of range"):
        ox.grad(lambda a, b: a.sum(), argnums=2)(x, x)
    with pytest.raises(ox.DifferentiationError, match="in_axes 2 is out of range"):
        ox.vmap(lambda a: a, in_axes=2)(ox.ones((2, 3)))
    with pytest.raises(ox.DifferentiationError, match="does not match"):
        ox.vmap(lambda a, b: a + b, in_axes=(0, (0, 1)))(ox.ones((2, 3)), ox.ones((2, 3)))
    with pytest.raises(ox.DifferentiationError, match="batch sizes differ"):
        ox.vmap(lambda a, b: a + b)(ox.ones((2, 3)), ox.ones((3, 3)))
    with pytest.raises(ox.DifferentiationError, match="read the value"):
        ox.vmap(lambda a: a * float(a.sum()))(ox.ones((2, 3)))
    with pytest.raises(ox.DifferentiationError, match="structure"):
        ox.vjp(lambda a: (a, a), x)[1](ox.ones(3))


def test_plugin_op_without_rules_is_refused_by_name():
    name = "test_autodiff_plugin_square"
    register_op(name, Category.UNARY, same_as_input, decompose=lambda x: x * x, doc="x^2", source="oxcore-someplugin")
    try:
        x = ox.asarray(rnd(21, 3))
        with pytest.raises(ox.DifferentiationError, match=f"{name}.*oxcore-someplugin"):
            ox.grad(lambda x: ox.build(name, x).sum())(x)
        REGISTRY.set_rules(name, vjp="decompose", jvp="decompose")  # the author opts in
        close(ox.grad(lambda x: ox.build(name, x).sum())(x).numpy(), 2 * x.numpy(), 1e-6)
        REGISTRY.set_rules(name, vjp=lambda g, out, x: (g * 2 * x,), jvp=None)  # a rule of its own
        _, t = ox.jvp(lambda x: ox.build(name, x), (x,), (ox.ones(3),))  # JVP by transposing the VJP
        close(t.numpy(), 2 * x.numpy(), 1e-6)
    finally:
        REGISTRY.ops.pop(name, None)
