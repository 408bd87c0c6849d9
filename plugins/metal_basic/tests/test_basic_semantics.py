"""Where MLX and NumPy differ, the MLX backends must give NumPy's answer.

Each test runs on every installed MLX backend (metal_fused compiles the segment) and compares
with NumPy itself on the same inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mlx.core")

import oxcore as ox  # noqa: E402
from oxcore.extend import manager  # noqa: E402

SIGNED = ["int8", "int16", "int32", "int64"]
UNSIGNED = ["uint8", "uint16", "uint32", "uint64"]


def _ints(rng, dt, shape, lo=-20, hi=20):
    info = np.iinfo(dt)
    return rng.integers(max(lo, info.min), min(hi, info.max), shape, endpoint=True).astype(dt)


@pytest.mark.parametrize("dt", SIGNED + UNSIGNED)
def test_integer_division_and_remainder_like_numpy(mlx_backend, run_on, dt):
    rng = np.random.default_rng(3)
    a, b = _ints(rng, dt, (64,)), _ints(rng, dt, (64,), -5, 5)
    info = np.iinfo(dt)
    a[:3] = [info.min, info.min, 7]
    b[:4] = [-1 if info.min < 0 else 1, 0, 0, 0]  # MIN // -1 and x // 0 trap in C; NumPy gives MIN and 0
    with np.errstate(all="ignore"):
        fd, rem = np.floor_divide(a, b), np.remainder(a, b)
    assert np.array_equal(run_on(mlx_backend, lambda x, y: x // y, a, b), fd)
    assert np.array_equal(run_on(mlx_backend, lambda x, y: x % y, a, b), rem)


@pytest.mark.parametrize("dt", ["float32", "float64", "float16", "bfloat16"])
def test_float_remainder_and_floor_divide_like_numpy(mlx_backend, run_on, dt):
    if dt == "float64" and manager().backend(mlx_backend).device.kind == "gpu":
        pytest.skip("capability: MLX has no float64 on the GPU (test_basic_support.py checks the refusal)")
    rng = np.random.default_rng()
    npdt = ox.dtype(dt).numpy
    a = np.concatenate([[-7.5, 7.5, -7.0, 7.0, 5.25, -0.5, 1.0, 0.3, -0.3], rng.uniform(-9, 9, 500)]).astype(npdt)
    b = np.concatenate([[2.0, -2.0, -2.0, 2.0, -1.5, 3.0, 0.1, 0.1, 0.1],  # 1.0 // 0.1 is 9 in NumPy
                        rng.uniform(0.05, 2, 500) * rng.choice([-1, 1], 500)]).astype(npdt)
    f32 = np.float64 if dt == "float64" else np.float32  # cpu_numpy's (and our) compute type
    want_mod = np.remainder(a.astype(f32), b.astype(f32)).astype(npdt)
    want_div = np.floor_divide(a.astype(f32), b.astype(f32)).astype(npdt)
    assert np.array_equal(run_on(mlx_backend, lambda x, y: x % y, a, b), want_mod)
    assert np.array_equal(run_on(mlx_backend, lambda x, y: x // y, a, b), want_div)


@pytest.mark.parametrize("dt", ["float32", "float16", "bfloat16"])
def test_round_half_to_even(mlx_backend, run_on, dt):
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.4, -3.6], np.float32).astype(ox.dtype(dt).numpy)
    got = run_on(mlx_backend, ox.round, x)
    assert np.array_equal(got.astype(np.float32), np.round(x.astype(np.float32)))


def test_round_floor_ceil_trunc_of_integers_are_identity(mlx_backend, run_on):
    x = np.array([-3, 0, 7], np.int16)
    for f in (ox.round, ox.floor, ox.ceil, ox.trunc):
        got = run_on(mlx_backend, f, x)
        assert got.dtype == np.int16 and np.array_equal(got, x)


def test_argmax_argmin_int64_first_occurrence_and_nan(mlx_backend, run_on):
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, np.nan, 5.0, np.nan], [4.0, 4.0, -1.0, -1.0]], np.float32)
    for f, ref in ((ox.argmax, np.argmax), (ox.argmin, np.argmin)):
        got = run_on(mlx_backend, lambda a: f(a, axis=1), x)
        assert got.dtype == np.int64 and np.array_equal(got, ref(x, axis=1))
        got = run_on(mlx_backend, lambda a: f(a, axis=None, keepdims=True), x)
        assert got.shape == (1, 1) and got.item() == ref(x)


@pytest.mark.parametrize("key", [np.s_[::-1], np.s_[5::-2], np.s_[-2::-3, 1:], np.s_[::-1, ::-2], np.s_[7:2:-1, :3],
                                 np.s_[2:2], np.s_[1:5:2, -1::-1], np.s_[..., ::-1]])
def test_slices_with_negative_steps_and_none_stops(mlx_backend, run_on, key):
    x = np.arange(8 * 5, dtype=np.float32).reshape(8, 5)
    assert np.array_equal(run_on(mlx_backend, lambda a: a[key], x), x[key])


def test_flip_uses_slice_with_none_stops(mlx_backend, run_on):
    x = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    assert np.array_equal(run_on(mlx_backend, lambda a: ox.flip(a, axis=(0, 2)), x), np.flip(x, (0, 2)))


KEYS = [
    lambda i, j: (slice(None), i, j),                 # adjacent arrays: result dims in place
    lambda i, j: (i, slice(1, None), j),              # non-adjacent: result dims first
    lambda i, j: (i, slice(None, None, -1)),          # array then reversed slice
    lambda i, j: (slice(2, 0, -1), j, slice(None)),   # negative step beside an array
]


@pytest.mark.parametrize("k", range(len(KEYS)))
def test_index_and_index_update_like_numpy(mlx_backend, run_on, k):
    rng = np.random.default_rng(k)
    x = rng.standard_normal((4, 5, 6)).astype(np.float32)
    i = np.array([[0, -1], [2, 1]])
    j = np.array([3, -5])
    key = KEYS[k](i, j)
    got = run_on(mlx_backend, lambda a, ii, jj: a[KEYS[k](ii, jj)], x, i, j)
    assert np.array_equal(got, x[key])
    v = rng.standard_normal(x[key].shape).astype(np.float32)

    def update(a, ii, jj, vv):
        a = a * 1.0
        a[KEYS[k](ii, jj)] = vv
        return a
    want = x.copy()
    want[key] = v
    assert np.array_equal(run_on(mlx_backend, update, x, i, j, v), want)


def test_index_update_with_slices_keeps_the_input(mlx_backend):
    x = ox.asarray(np.zeros((3, 4), np.float32)).to_device("mlx:" + ox.extend.manager().backend(mlx_backend).device.kind)
    with ox.use(mlx_backend):
        y = x * 1.0
        y[1:, ::-2] = 5.0
        z = x + 1.0
    ox.eval(y, z)
    want = np.zeros((3, 4), np.float32)
    want[1:, ::-2] = 5.0
    assert np.array_equal(y.numpy(), want) and np.array_equal(z.numpy(), np.ones((3, 4), np.float32))
    assert not x.numpy().any()


def test_take_wraps_negative_indices(mlx_backend, run_on):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    idx = np.array([[-1, 0], [-4, 2]])
    assert np.array_equal(run_on(mlx_backend, lambda a, i: ox.take(a, i, axis=1), x, idx), np.take(x, idx, axis=1))
    along = np.array([[-1], [0], [-2]])
    assert np.array_equal(run_on(mlx_backend, lambda a, i: ox.take_along_axis(a, i, axis=1), x, along),
                          np.take_along_axis(x, along, axis=1))


@pytest.mark.parametrize("include_initial", [False, True])
def test_cumulative_include_initial(mlx_backend, run_on, include_initial):
    x = np.array([[1, 2, 3], [4, -5, 6]], np.int32)
    for f, ref, init in ((ox.cumulative_sum, np.cumsum, 0), (ox.cumulative_prod, np.cumprod, 1)):
        got = run_on(mlx_backend, lambda a: f(a, axis=1, include_initial=include_initial), x)
        want = ref(x, axis=1, dtype=np.int64)
        if include_initial:
            want = np.concatenate([np.full((2, 1), init, np.int64), want], axis=1)
        assert got.dtype == np.int64 and np.array_equal(got, want)


@pytest.mark.parametrize("dt", SIGNED + UNSIGNED)
def test_shifts_like_numpy(mlx_backend, run_on, dt):
    rng = np.random.default_rng(5)
    bits = 8 * np.dtype(dt).itemsize
    a = _ints(rng, dt, (40,), -(2 ** 30), 2 ** 30)
    a[:2] = [np.iinfo(dt).max, np.iinfo(dt).min]
    s = rng.integers(0, bits + 4, (40,)).astype(dt)  # includes shifts >= the bit width
    s[:4] = [1, 1, bits, bits + 1]
    assert np.array_equal(run_on(mlx_backend, lambda x, y: x << y, a, s), np.left_shift(a, s))
    assert np.array_equal(run_on(mlx_backend, lambda x, y: x >> y, a, s), np.right_shift(a, s))


@pytest.mark.parametrize("to", ["int8", "int32", "int64", "uint8", "bool"])
def test_astype_truncates_toward_zero(mlx_backend, run_on, to):
    x = np.array([1.7, -1.7, 0.5, -0.5, 99.9, 0.0, 2.5], np.float32)
    if to.startswith("u"):
        x = np.abs(x)
    got = run_on(mlx_backend, lambda a: a.astype(ox.dtype(to)), x)
    assert np.array_equal(got, x.astype(to))


def test_sign_signbit_and_predicates(mlx_backend, run_on):
    x = np.array([np.nan, -0.0, 0.0, -2.0, 3.0, -np.inf, np.inf], np.float32)
    assert np.array_equal(run_on(mlx_backend, ox.sign, x), np.sign(x), equal_nan=True)
    assert np.array_equal(run_on(mlx_backend, ox.signbit, x), np.signbit(x))
    assert np.array_equal(run_on(mlx_backend, lambda a, b: ox.copysign(a, b), np.ones(7, np.float32), x),
                          np.copysign(np.ones(7, np.float32), x))
    n = np.array([0, 5, 255], np.uint8)
    assert np.array_equal(run_on(mlx_backend, ox.sign, n), np.sign(n))
    for f, ref in ((ox.isnan, np.isnan), (ox.isinf, np.isinf), (ox.isfinite, np.isfinite)):
        assert np.array_equal(run_on(mlx_backend, f, n), ref(n))


def test_full_and_arange_exact(mlx_backend, run_on):
    with ox.use(mlx_backend):
        big = ox.full((3,), 2 ** 64 - 5, dtype=ox.uint64)
        r = ox.arange(-7, 20, 3, dtype=ox.int16)
        f = ox.arange(0.5, 3.0, 0.25)
    assert np.array_equal(big.numpy(), np.full(3, 2 ** 64 - 5, np.uint64))
    assert np.array_equal(r.numpy(), np.arange(-7, 20, 3, dtype=np.int16))
    assert np.allclose(f.numpy(), np.arange(0.5, 3.0, 0.25), rtol=0, atol=1e-6)


def test_var_fractional_correction_and_empty_reductions(mlx_backend, run_on):
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    got = run_on(mlx_backend, lambda a: ox.var(a, axis=1, correction=1.5), x)
    want = ((x - x.mean(1, keepdims=True)) ** 2).sum(1) / (6 - 1.5)
    assert np.allclose(got, want, rtol=1e-5)
    got = run_on(mlx_backend, lambda a: ox.logsumexp(a, axis=0), np.zeros((0, 3), np.float32))
    assert np.array_equal(got, np.full(3, -np.inf, np.float32))


def test_integer_matmul_wraps_like_numpy(mlx_backend, run_on):
    rng = np.random.default_rng(2)
    a, b = rng.integers(-128, 127, (5, 7)).astype(np.int8), rng.integers(-128, 127, (7, 3)).astype(np.int8)
    assert np.array_equal(run_on(mlx_backend, lambda x, y: x @ y, a, b), a @ b)
    v = rng.integers(-9, 9, (7,)).astype(np.int64)
    assert np.array_equal(run_on(mlx_backend, lambda x, y: x @ y, a.astype(np.int64), v), a.astype(np.int64) @ v)


def test_bool_arithmetic(mlx_backend, run_on):
    a, b = np.array([True, True, False, False]), np.array([True, False, True, False])
    assert np.array_equal(run_on(mlx_backend, lambda x, y: x + y, a, b), a + b)
    assert np.array_equal(run_on(mlx_backend, lambda x, y: x * y, a, b), a * b)
    assert np.array_equal(run_on(mlx_backend, lambda x: ~x, a), ~a)
