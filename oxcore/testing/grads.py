"""Gradient and batching checks over the conformance cases, for any backend.

For a case (an op with a float64 NumPy reference) and a floating dtype:

- **JVP vs finite differences**: ``oxcore.jvp`` along a random direction ``v`` equals the
  central difference of the float64 reference, ``(f(x + h v) - f(x - h v)) / 2h``.
- **VJP vs finite differences**: ``<vjp(u), v> == <u, J v>`` for a random cotangent ``u``.
- **VJP/JVP consistency**: ``<vjp(u), v> == <u, jvp(v)>`` with both from oxcore.
- **vmap vs a loop**: ``oxcore.vmap`` of the case over stacked inputs equals the per-example
  results stacked.

Points where the reference is not smooth (a kink of ``abs``, a tie of ``max``) are detected by
comparing one-sided differences, and another random point is drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import oxcore as ox

from .._dtypes import DType, float32, float64
from .cases import Case, smooth

__all__ = ["differentiable", "check_gradients", "check_vmap", "GRAD_DTYPES"]

#: dtypes the gradient checks run in (finite differences need the precision)
GRAD_DTYPES = (float32, float64)
_RTOL = {"float64": 1e-6, "float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
_STEP = 1e-6


def _float_positions(inputs: list[np.ndarray]) -> list[int]:
    return [i for i, a in enumerate(inputs) if a.dtype.kind == "f" or a.dtype.name == "bfloat16"]


#: ops whose derivative is zero by design although their reference is not constant
_ZERO_BY_DESIGN = frozenset({"stop_gradient"})


def differentiable(case: Case, dt: DType) -> bool:
    """Whether the case has finite floating inputs and a floating result in ``dt`` (cases about
    infinities test forward semantics; there is no derivative to check there)."""
    if dt not in case.dtypes or not dt.is_floating or case.op in _ZERO_BY_DESIGN:
        return False
    inputs, kw = case.make(dt, case.example(dt), 0)
    pos = _float_positions(inputs)
    return (bool(pos) and case.out_dtype(dt, kw).is_floating
            and all(np.isfinite(inputs[p].astype(np.float64)).all() for p in pos))


def _ref(case: Case, inputs: list[np.ndarray], kw: dict, pos: list[int], xs: list[np.ndarray]) -> np.ndarray:
    full = [np.asarray(a, dtype=np.float64) if a.dtype.kind == "f" else a for a in inputs]
    for p, x in zip(pos, xs):
        full[p] = x
    with np.errstate(all="ignore"):
        return np.asarray((case.grad_ref or case.ref)(*full, **kw), dtype=np.float64)


def _directional(case: Case, inputs: list, kw: dict, pos: list[int], v: list[np.ndarray]) -> np.ndarray | None:
    """J v by central differences of the float64 reference; None at a non-smooth point."""
    x0 = [np.asarray(inputs[p], dtype=np.float64) for p in pos]
    h = _STEP * max(1.0, max(float(np.abs(x).max(initial=0.0)) for x in x0))
    f0 = _ref(case, inputs, kw, pos, x0)
    fp = _ref(case, inputs, kw, pos, [x + h * d for x, d in zip(x0, v)])
    fm = _ref(case, inputs, kw, pos, [x - h * d for x, d in zip(x0, v)])
    if not (np.all(np.isfinite(f0)) and np.all(np.isfinite(fp)) and np.all(np.isfinite(fm))):
        return None
    fwd, bwd = (fp - f0) / h, (f0 - fm) / h
    scale = np.abs(fwd).max(initial=0.0) + np.abs(bwd).max(initial=0.0) + 1.0
    if np.abs(fwd - bwd).max(initial=0.0) > 1e-3 * scale:  # a kink or a jump between x - h and x + h
        return None
    return (fp - fm) / (2 * h)


def _dot(a: Any, b: Any) -> float:
    return float(np.sum(np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)))


def _mag(a: Any, b: Any) -> float:
    return float(np.sum(np.abs(np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64))))


def check_gradients(case: Case, dt: DType, backend: str, seeds: int = 4) -> str | None:
    """Run the three gradient checks on ``backend``; raise AssertionError on a wrong rule.

    Returns None when checked, or the reason it could not be (no smooth point was found)."""
    gen = smooth(case.inputs)
    params = case.example(dt)
    # NOTE: a result in a coarser dtype (astype to float16...) rounds the tangent too
    coarse = max(_RTOL[dt.name], _RTOL[case.out_dtype(dt, params[1]).name])
    rtol = coarse * case.tolerance(dt) if isinstance(case.tol, (int, float)) else coarse
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        shapes, kw = params
        inputs = gen(np.random.default_rng(seed), dt, shapes, kw)
        pos = _float_positions(inputs)
        v = [rng.uniform(-1, 1, inputs[p].shape) for p in pos]
        jv = _directional(case, inputs, kw, pos, v)
        if jv is None:
            continue
        what = f"{case.id} on {backend} ({dt.name}, input shapes {[a.shape for a in inputs]}, attrs {kw}, seed {seed})"

        def f(*xs: Any) -> Any:
            full = list(inputs)
            for p, x in zip(pos, xs):
                full[p] = x
            return case.build(ox, *full, **kw)

        with ox.use(backend):
            primals = [ox.asarray(inputs[p]) for p in pos]
            out, back = ox.vjp(f, *primals)
            u = rng.uniform(-1, 1, out.shape).astype(dt.numpy)
            cts = back(ox.asarray(u))
            y, t = ox.jvp(f, primals, [ox.asarray(d.astype(dt.numpy)) for d in v])
            ox.eval(*cts, t)
        vjp_v = sum(_dot(c.numpy(), d) for c, d in zip(cts, v))
        u_jv = _dot(u, jv)
        u_t = _dot(u, t.numpy())
        scale = _mag(u, jv) + sum(_mag(c.numpy(), d) for c, d in zip(cts, v)) + 1e-30
        assert abs(u_t - u_jv) <= rtol * scale, (
            f"{what}: JVP disagrees with finite differences: <u, jvp(v)> = {u_t:.8g}, <u, J v> = {u_jv:.8g}")
        assert abs(vjp_v - u_jv) <= rtol * scale, (
            f"{what}: VJP disagrees with finite differences: <vjp(u), v> = {vjp_v:.8g}, <u, J v> = {u_jv:.8g}")
        assert abs(vjp_v - u_t) <= rtol * scale, (
            f"{what}: VJP and JVP disagree: <vjp(u), v> = {vjp_v:.8g}, <u, jvp(v)> = {u_t:.8g}")
        return None
    return f"no point where the reference is smooth in {seeds} draws"


def check_vmap(case: Case, dt: DType, backend: str, batch: int = 3) -> None:
    """``vmap`` of the case over ``batch`` stacked examples equals the examples one by one."""
    from .check import assert_close

    shapes, kw = case.example(dt)
    examples = [case.inputs(np.random.default_rng(seed), dt, shapes, kw) for seed in range(batch)]
    stacked = [np.stack([ex[i] for ex in examples]) for i in range(len(examples[0]))]
    with ox.use(backend):
        got = ox.vmap(lambda *xs: case.build(ox, *xs, **kw))(*[ox.asarray(s) for s in stacked])
        want = [case.build(ox, *ex, **kw) for ex in examples]
        ox.eval(got, *want)
    expected = np.stack([w.numpy() for w in want])
    assert_close(got, expected, case.out_dtype(dt, kw), what=f"vmap of {case.id} on {backend} ({dt.name}) vs a loop",
                 tol=case.tolerance(dt))
