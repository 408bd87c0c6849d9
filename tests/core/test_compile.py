"""``oxcore.compile``: a traced function replays its plan; results match the lazy path on fresh
random inputs; new signatures trace again; what cannot be replayed raises ``CompileError``."""

from __future__ import annotations

import numpy as np
import pytest

import oxcore as ox
from oxcore import _plan
from oxcore.extend import Kernel, manager
from oxcore.testing import assert_close, run_in_threads

from .conftest import inline_plugin

rng = np.random.default_rng()
SHAPES = [(7,), (3, 5), (2, 3, 4)]
FLOATS = [ox.float32, ox.float64, ox.float16, ox.bfloat16]


def _rand(shape, dt=ox.float32) -> ox.Array:
    return ox.asarray(rng.uniform(-2, 2, shape).astype(np.float64)).astype(dt)


def _f64(a: ox.Array) -> np.ndarray:
    return np.asarray(a.astype(ox.float32).numpy() if a.dtype is ox.bfloat16 else a.numpy(), np.float64)


def step(x, w, b):
    return ox.tanh(x * w + b) * 0.5 - ox.exp(-x * x) / 3


def step_ref(x, w, b):
    return np.tanh(x * w + b) * 0.5 - np.exp(-x * x) / 3


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dt", FLOATS, ids=lambda d: d.name)
def test_replay_matches_numpy_float64_on_fresh_inputs(shape, dt):
    f = ox.compile(step)
    for _ in range(3):  # NOTE: new values each call, one trace
        x, w, b = _rand(shape, dt), _rand(shape[-1:], dt), _rand((), dt)
        y = f(x, w, b)
        assert y.shape == shape and y.dtype is dt and not y.is_lazy
        assert_close(y, step_ref(_f64(x), _f64(w), _f64(b)), dt, what=f"compiled step {dt.name}{shape}", tol=8)
        assert_close(y, step(x, w, b), dt, what="compiled vs lazy", tol=4)
    assert f.traces == 1


def test_new_shapes_dtypes_and_constant_arguments_trace_again():
    calls = []

    def f(x, k):
        calls.append(k)
        return x * k

    g = ox.compile(f)
    x = _rand((4,))
    assert_close(g(x, 2), _f64(x) * 2, ox.float32, what="k=2")
    x2 = _rand((4,))
    assert_close(g(x2, 2), _f64(x2) * 2, ox.float32, what="same signature")
    assert g.traces == 1 and calls == [2]
    assert_close(g(x, 3), _f64(x) * 3, ox.float32, what="k=3")  # a new constant: a new trace
    assert_close(g(x, 3.0), _f64(x) * 3, ox.float32, what="k=3.0")  # 3 and 3.0 are different keys
    g(_rand((5,)), 2)
    g(_rand((4,), ox.float64), 2)
    assert g.traces == 5 and calls == [2, 3, 3.0, 2, 2]


def test_structures_in_and_out_kwargs_and_passthrough():
    @ox.compile
    def f(params, xs, *, scale):
        h = xs[0] @ params["w"] + params["b"]
        return {"h": h * scale, "pair": (xs[1], h.sum()), "same": params["w"]}

    params = {"w": _rand((3, 2)), "b": _rand((2,))}
    xs = [_rand((4, 3)), _rand((5,))]
    out = f(params, xs, scale=2.0)
    want = (_f64(xs[0]) @ _f64(params["w"]) + _f64(params["b"]))
    assert set(out) == {"h", "pair", "same"} and isinstance(out["pair"], tuple)
    assert_close(out["h"], want * 2, ox.float32, what="h", tol=8)
    assert out["pair"][0] is xs[1] and out["same"] is params["w"]  # inputs come back as themselves
    assert_close(out["pair"][1], want.sum(), ox.float32, what="sum", tol=16)
    xs2 = [_rand((4, 3)), _rand((5,))]
    assert_close(f(params, xs2, scale=2.0)["h"], (_f64(xs2[0]) @ _f64(params["w"]) + _f64(params["b"])) * 2,
                 ox.float32, what="second call", tol=8)
    assert f.traces == 1


def test_a_module_argument_arrives_as_a_module_and_its_trace_is_replayed():
    seen = []

    @ox.compile
    def f(model, x):
        seen.append(type(model))
        return model(x)

    def ref(m, x):
        return _f64(x) @ _f64(m.weight).T + (_f64(m.bias) if "bias" in m else 0)

    m, x = ox.nn.Linear(3, 2), _rand((4, 3))
    assert_close(f(m, x), ref(m, x), ox.float32, what="Linear", tol=8)
    assert seen == [ox.nn.Linear] and f.traces == 1
    m2, x2 = ox.nn.Linear(3, 2), _rand((4, 3))  # NOTE: same structure, new weights: the trace replays
    assert_close(f(m2, x2), ref(m2, x2), ox.float32, what="second Linear", tol=8)
    assert seen == [ox.nn.Linear] and f.traces == 1
    m3 = ox.nn.Linear(3, 2, bias=False)  # NOTE: another structure traces again
    assert_close(f(m3, x2), ref(m3, x2), ox.float32, what="Linear without bias", tol=8)
    assert seen == [ox.nn.Linear] * 2 and f.traces == 2


def test_named_tuples_stay_named_tuples_in_and_out():
    from collections import namedtuple

    Pair = namedtuple("Pair", "a b")
    f = ox.compile(lambda p: Pair(p.b * 2, p.a + p.b))
    for _ in range(2):
        a, b = _rand((3,)), _rand((3,))
        out = f(Pair(a, b))
        assert type(out) is Pair
        assert_close(out.a, _f64(b) * 2, ox.float32, what="a")
        assert_close(out.b, _f64(a) + _f64(b), ox.float32, what="b")
    assert f.traces == 1


def test_numpy_arguments_and_lazy_arguments_are_accepted():
    f = ox.compile(lambda a, b: a + b)
    a = rng.uniform(size=(3,)).astype(np.float32)
    lazy = ox.asarray(a) * 2
    assert lazy.is_lazy
    assert_close(f(lazy, a), a.astype(np.float64) * 3, ox.float32, what="lazy + numpy")
    assert not lazy.is_lazy


def test_captured_arrays_are_constants_of_the_trace():
    w = _rand((3,))
    f = ox.compile(lambda x: x * w)
    x = _rand((3,))
    first = _f64(f(x))
    w = _rand((3,))  # NOTE: rebinding the global does not reach the replayed plan (documented)
    np.testing.assert_array_equal(_f64(f(x)), first)


@pytest.mark.parametrize("backend", ["cpu_numpy", "metal_basic", "metal_fused"])
def test_scalar_constants_with_equal_structure_do_not_share_code(backend):
    """Constants may be baked into compiled segments: the segment key must carry their values."""
    if backend not in ox.backends():
        pytest.skip(f"{backend} not available here: {manager().backends[backend].available()[1]}")
    x = _rand((6,))
    f2, f3 = ox.compile(lambda v: ox.exp(v) * 2.0), ox.compile(lambda v: ox.exp(v) * 3.0)
    with ox.use(backend):
        for _ in range(3):  # NOTE: metal_fused compiles a segment on its second run
            y2, y3 = f2(x), f3(x)
    assert_close(y2, np.exp(_f64(x)) * 2, ox.float32, what=f"*2 on {backend}")
    assert_close(y3, np.exp(_f64(x)) * 3, ox.float32, what=f"*3 on {backend}")


def test_constants_move_to_their_device_once(fake_backend):
    x = ox.asarray(rng.uniform(size=(4,)).astype(np.float32)).to_device("fake:mem")
    f = ox.compile(lambda v: (v * 2.5 + 1.5) * 2.5)
    with ox.use("fake"):
        f(x)
        before = fake_backend.moves
        ys = [f(x) for _ in range(5)]
        ex = f.explain(x)
    assert fake_backend.moves == before  # NOTE: the two distinct scalars crossed at trace time only
    assert_close(ys[-1], (_f64(x) * 2.5 + 1.5) * 2.5, ox.float32, what="on fake")
    assert len(ex.transfers) == 2  # 2.5 shared, 1.5: small equal constants are one input


def test_mixed_placement_with_transfers_replays_correctly(fake_backend):
    a, b = rng.uniform(-1, 1, (3, 4)).astype(np.float32), rng.uniform(-1, 1, (4,)).astype(np.float32)

    def f(x, y):
        with ox.use("fake"):
            h = ox.exp(x * y)
        return ox.sin(h) + 1  # sin: fake has no kernel, runs on cpu_numpy

    g = ox.compile(f)
    ex = g.explain(ox.asarray(a), ox.asarray(b))
    assert {"fake", "cpu_numpy"} <= set(ex.backends) and ex.transfers
    for _ in range(2):
        a, b = rng.uniform(-1, 1, (3, 4)).astype(np.float32), rng.uniform(-1, 1, (4,)).astype(np.float32)
        assert_close(g(ox.asarray(a), ox.asarray(b)), np.sin(np.exp(a.astype(np.float64) * b)) + 1, ox.float32,
                     what="fake -> cpu_numpy")


def test_pins_at_call_time_are_part_of_the_key(fake_backend):
    f = ox.compile(lambda v: v * 2.0 + 1.0)
    x = _rand((5,))
    with ox.use("fake"):
        on_fake = f(x)
    on_host = f(x)
    assert on_fake.device == "fake:mem" and on_host.device == "cpu" and f.traces == 2
    np.testing.assert_allclose(on_fake.numpy(), on_host.numpy())


def test_nested_compiled_function_is_inlined_into_the_outer_trace():
    inner = ox.compile(lambda v: v * 3.0)
    outer = ox.compile(lambda v: inner(v) + 1.0)
    for _ in range(2):
        x = _rand((4,))
        assert_close(outer(x), _f64(x) * 3 + 1, ox.float32, what="nested")
    assert outer.traces == 1 and inner.traces == 0


@pytest.mark.parametrize("read", [lambda v: float(v.sum()), lambda v: bool(v[0] > 0), lambda v: v.numpy(),
                                  lambda v: v.item() if v.size == 1 else v.tolist(), lambda v: v.to_device("cpu")],
                         ids=["float", "bool", "numpy", "tolist", "to_device"])
def test_reading_values_of_arguments_raises_compile_error(read):
    def f(v):
        read(v * 2)
        return v

    def g(v):  # the argument itself, not a node built from it
        read(v)
        return v
    for fn in (f, g):
        with pytest.raises(ox.CompileError, match="read the value of an array that depends on its arguments"):
            ox.compile(fn)(_rand((3,)))


def test_values_independent_of_arguments_may_be_read_while_tracing():
    table = ox.asarray([1.0, 2.0, 3.0])
    f = ox.compile(lambda v: v * float(table.sum()))  # NOTE: a constant; evaluated at trace time
    x = _rand((3,))
    assert_close(f(x), _f64(x) * 6, ox.float32, what="constant read")


def test_assigning_into_an_argument_raises_compile_error():
    def f(v):
        v[0] = 1.0
        return v * 2

    with pytest.raises(ox.CompileError, match="assigned into one of its arguments"):
        ox.compile(f)(_rand((3,)))


def test_unseeded_random_raises_seeded_random_is_repeatable():
    with pytest.raises(ox.CompileError, match="without seed="):
        ox.compile(lambda v: v + ox.random.normal(v.shape))(_rand((4,)))
    f = ox.compile(lambda v, s: v + ox.random.normal(v.shape, seed=s))
    x = _rand((4,))
    a, b, c = f(x, 1), f(x, 1), f(x, 2)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy()) and f.traces == 2
    np.testing.assert_allclose((a - x).numpy(), ox.random.normal((4,), seed=1).numpy(), rtol=1e-6)


def test_unhashable_constant_argument_raises_type_error():
    with pytest.raises(TypeError, match="neither an array"):
        ox.compile(lambda v, opts: v)(_rand((2,)), {1, 2})


def test_shape_errors_still_raise_at_the_line_that_built_the_op():
    f = ox.compile(lambda a, b: a @ b)
    with pytest.raises(ox.ShapeError):
        f(_rand((2, 3)), _rand((4, 5)))


def test_max_traces_bounds_the_cache():
    f = ox.compile(lambda v: v + 1.0, max_traces=2)
    for n in (1, 2, 3, 1):
        f(_rand((n,)))
    assert f.traces == 4 and len(f._cache) == 2  # (1,) was dropped first, so it traced again


def test_concurrent_calls_from_threads_get_their_own_results():
    f = ox.compile(lambda v, w: ox.tanh(v @ w))
    ins = [(rng.uniform(-1, 1, (4, 3)).astype(np.float32), rng.uniform(-1, 1, (3, 2)).astype(np.float32))
           for _ in range(8)]
    out: dict[int, np.ndarray] = {}

    def work(i):
        for _ in range(20):
            out[i] = f(ox.asarray(ins[i][0]), ox.asarray(ins[i][1])).numpy()
    run_in_threads(work, 8)
    for i, (a, b) in enumerate(ins):
        assert_close(out[i], np.tanh(a.astype(np.float64) @ b), ox.float32, what=f"thread {i}")


def test_a_kernel_failing_during_replay_is_disabled_and_the_function_traced_again():
    def broken(x):
        raise RuntimeError("boom in replay")

    def kernels(register):
        register(Kernel("exp", "cpu_numpy", broken, name="broken_in_replay", prior_us=lambda p: 0.001))
    with inline_plugin("broken_replay", oxcore_register_kernels=kernels):
        f = ox.compile(lambda v: ox.exp(v) + 1.0)
        x = _rand((5,))
        with ox.use("cpu_numpy"):
            assert f.explain(x).nodes[0].kernel.id == "cpu_numpy.exp.broken_in_replay"
            assert_close(f(x), np.exp(_f64(x)) + 1, ox.float32, what="after re-trace")
        assert "broken_in_replay" in _plan.FAILURES[-1] and "boom in replay" in _plan.FAILURES[-1]


# --- donate: arguments whose buffers the compiled step may overwrite -------------------------

def _write_rows(cache, rows, idx):
    """A decode step's cache update: rows written at positions idx (axis 1), then read."""
    new = ox.setitem(cache, (slice(None), idx), rows)
    return new, ox.sum(new * 2, axis=1)


def _write_rows_ref(cache, rows, idx):
    out = cache.copy()
    out[:, idx] = rows
    return out, (out.astype(np.float64) * 2).sum(1)


@pytest.mark.parametrize("shape", [(2, 9), (3, 16, 4), (1, 5, 2, 3)])
@pytest.mark.parametrize("dt", [ox.float32, ox.float64, ox.int32], ids=lambda d: d.name)
def test_a_donated_cache_is_updated_in_its_own_buffer(shape, dt):
    f = ox.compile(_write_rows, donate=0)
    cache = ox.asarray(rng.integers(-5, 5, shape)).astype(dt)
    ref = cache.numpy().copy()
    buf = cache.numpy()
    for step in range(4):  # NOTE: each step's output is the next step's donated cache
        idx = np.asarray(sorted(rng.choice(shape[1], 2, replace=False)), np.int32)
        rows = ox.asarray(rng.integers(-5, 5, (shape[0], 2) + shape[2:])).astype(dt)
        cache, total = f(cache, rows, idx)
        ref, ref_total = _write_rows_ref(ref, rows.numpy(), idx)
        np.testing.assert_array_equal(cache.numpy(), ref)
        np.testing.assert_allclose(total.numpy(), ref_total, rtol=1e-5, err_msg=f"sum after step {step}")
        assert np.shares_memory(cache.numpy(), buf), "the update copied the donated cache"
    assert f.traces == 1


def test_without_donate_the_argument_keeps_its_values():
    f = ox.compile(_write_rows)
    cache = _rand((3, 8))
    before = cache.numpy().copy()
    new, _ = f(cache, _rand((3, 1)), np.asarray([2], np.int32))
    np.testing.assert_array_equal(cache.numpy(), before)
    assert not np.shares_memory(new.numpy(), cache.numpy())


def test_a_donated_argument_read_elsewhere_or_returned_is_not_overwritten():
    def read_twice(cache, rows, idx):  # NOTE: the old cache is read after the update is built
        new = ox.setitem(cache, (slice(None), idx), rows)
        return new, ox.sum(cache, axis=1)

    def returned(cache, rows, idx):
        return ox.setitem(cache, (slice(None), idx), rows), cache

    for fn in (read_twice, returned):
        f = ox.compile(fn, donate=0)
        cache = _rand((2, 6))
        old = cache.numpy().copy()
        rows, idx = _rand((2, 1)), np.asarray([4], np.int32)
        new, other = f(cache, rows, idx)
        ref = old.copy()
        ref[:, [4]] = rows.numpy()
        np.testing.assert_array_equal(new.numpy(), ref)
        if fn is returned:
            np.testing.assert_array_equal(other.numpy(), old)
        else:
            assert_close(other, old.astype(np.float64).sum(1), ox.float32, what="sum of the old cache")


def test_a_read_only_donated_buffer_is_copied():
    f = ox.compile(_write_rows, donate=0)
    base = rng.uniform(-1, 1, (2, 5)).astype(np.float32)
    base.flags.writeable = False
    new, _ = f(ox.asarray(base), _rand((2, 1)), np.asarray([0], np.int32))
    assert new.numpy()[:, 1:].tolist() == base[:, 1:].tolist() and not np.shares_memory(new.numpy(), base)


def test_donate_pytrees_of_arrays():
    def step(caches, rows, idx):
        return [ox.setitem(c, (slice(None), idx), rows) for c in caches]

    f = ox.compile(step, donate=(0,))
    caches = [_rand((2, 4)) for _ in range(3)]
    bufs = [c.numpy() for c in caches]
    refs = [b.copy() for b in bufs]
    rows = _rand((2, 1))
    out = f(caches, rows, np.asarray([3], np.int32))
    for o, b, r in zip(out, bufs, refs):
        r[:, [3]] = rows.numpy()
        np.testing.assert_array_equal(o.numpy(), r)
        assert np.shares_memory(o.numpy(), b)


def test_donating_a_buffer_that_is_also_another_argument_raises():
    f = ox.compile(lambda a, b, idx: (ox.setitem(a, (slice(None), idx), 1.0), b * 2), donate=0)
    x = _rand((2, 3))
    with pytest.raises(ox.CompileError, match="argument 1 shares its buffer with array argument 0"):
        f(x, x, np.asarray([0], np.int32))


@pytest.mark.parametrize("donate", [-1, "0", 1.5, (0, None), True])
def test_donate_takes_argument_positions(donate):
    with pytest.raises(TypeError, match="donate takes positions"):
        ox.compile(_write_rows, donate=donate)


def test_donating_a_missing_argument_raises():
    f = ox.compile(_write_rows, donate=5)
    with pytest.raises(ox.CompileError, match="names positional argument 5"):
        f(_rand((2, 3)), _rand((2, 1)), np.asarray([0], np.int32))
