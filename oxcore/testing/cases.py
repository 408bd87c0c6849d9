"""The conformance cases: for every registry op, builders with a float64 NumPy reference.

A ``Case`` is data: which op it exercises, a builder ``build(ox, *inputs, **kw)`` that takes
the ``oxcore`` module and NumPy inputs and returns a lazy Array whose output node is that op,
a reference ``ref(*inputs, **kw)`` computed in float64 (integer inputs stay integers), the
dtypes it runs in, a hypothesis strategy of ``(shapes, kw)`` per dtype, and the input
generator (fresh random values in the tested dtype, never all zeros, with edge values where
they matter). ``CASES`` holds the core's; plugins add cases for their own ops through the
``oxcore_register_test_cases`` hook (``plugin_cases()``; ``all_cases()`` is both);
``sample_for(op)`` gives one small lazy Array per op (used by ``oxcore.coverage`` and
``oxcore ops list``).

hypothesis is imported only when a strategy is asked for, so ``oxcore ops list`` does not
need it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from .. import _dtypes
from .._dtypes import DType

Shapes = tuple[tuple[int, ...], ...]
Params = tuple[Shapes, dict]


@dataclass(frozen=True)
class Case:
    """One way of exercising one op.

    Attributes:
        op: the registry op the built array's output node must be.
        name: variant name (``""`` for the plain case); ``id`` is ``op[name]``.
        build: ``build(ox, *inputs: np.ndarray, **kw) -> oxcore.Array``.
        ref: ``ref(*inputs, **kw) -> np.ndarray``; floating inputs arrive as float64.
        dtypes: the dtypes it runs in (the first is used for samples).
        params: ``params(dtype)`` -> hypothesis strategy of ``(shapes, kw)``.
        example: ``example(dtype)`` -> one ``(shapes, kw)``, no hypothesis needed.
        inputs: ``inputs(rng, dtype, shapes, kw) -> list[np.ndarray]``.
        out: ``out(dtype, kw) -> DType`` of the result (default: ``dtype``).
        tol: multiplies the dtype tolerance (a float, or a mapping dtype name -> float).
        grad_ref: the reference in float64 throughout, where ``ref`` rounds on purpose (as the
            op defines); gradient checks take finite differences of it.
        nmse: compare by normalized mean squared error at most this (a float, or a mapping
            dtype name -> float) instead of elementwise (``oxcore.testing.check.assert_nmse``):
            for kernels whose error is a property of the whole result (quantized matmuls).
    """

    op: str
    build: Callable[..., Any]
    ref: Callable[..., Any]
    dtypes: tuple[DType, ...]
    params: Callable[[DType], Any]
    example: Callable[[DType], Params]
    inputs: Callable[..., list]
    out: Callable[[DType, dict], DType] | None = None
    name: str = ""
    tol: float | Mapping[str, float] = 1.0
    grad_ref: Callable[..., Any] | None = None
    nmse: float | Mapping[str, float] | None = None

    @property
    def id(self) -> str:
        return f"{self.op}[{self.name}]" if self.name else self.op

    def out_dtype(self, dt: DType, kw: dict) -> DType:
        return self.out(dt, kw) if self.out else dt

    def tolerance(self, dt: DType) -> float:
        return self.tol.get(dt.name, 1.0) if isinstance(self.tol, Mapping) else self.tol

    def make(self, dt: DType, params: Params, seed: int) -> tuple[list[np.ndarray], dict]:
        """The inputs (in ``dt``) and attributes for one run."""
        shapes, kw = params
        return self.inputs(np.random.default_rng(seed), dt, shapes, kw), kw

    def reference(self, inputs: list[np.ndarray], kw: dict) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(self.ref(*[to_ref(a) for a in inputs], **kw))

    def check(self, got: Any, expected: np.ndarray, dt: DType, kw: dict, what: str) -> None:
        """Assert ``got`` matches ``expected`` the way this case compares: elementwise within
        the dtype's tolerance times ``tol``, or by NMSE when the case sets ``nmse``."""
        from .check import assert_close, assert_nmse

        if self.nmse is not None:
            bound = self.nmse.get(dt.name) if isinstance(self.nmse, Mapping) else self.nmse
            if bound is not None:
                assert_nmse(got, expected, self.out_dtype(dt, kw), what=what, max_nmse=bound)
                return
        assert_close(got, expected, self.out_dtype(dt, kw), what=what, tol=self.tolerance(dt))


CASES: list[Case] = []


def cases_for(op: str) -> list[Case]:
    """The cases of ``op``, the core's and the plugins'."""
    return [c for c in all_cases() if c.op == op]


def iter_cases() -> Iterator[tuple[Case, DType]]:
    """Every (case, dtype) combination: the core's in registry order, then the plugins'."""
    for c in all_cases():
        for dt in c.dtypes:
            yield c, dt


def all_cases() -> list[Case]:
    """The core's ``CASES`` followed by the installed plugins' (``plugin_cases``)."""
    return CASES + plugin_cases()


@dataclass(frozen=True)
class PluginCaseError:
    """A plugin whose ``oxcore_register_test_cases`` failed (the kit reports it as a failing test)."""

    plugin: str
    reason: str

    @property
    def id(self) -> str:
        return f"plugin-cases[{self.plugin}]"


_PLUGIN_CASES: dict[int, tuple[list[Case], list[PluginCaseError]]] = {}


def plugin_cases() -> list[Case]:
    """Cases that installed plugins add for their own ops (hook ``oxcore_register_test_cases``),
    collected once per loaded plugin set. A plugin whose hook raises, or registers something
    that is not a usable ``Case``, adds none and is listed by ``plugin_case_errors()``.

    Example:
        >>> from oxcore.testing import plugin_cases
        >>> all(c.op != "add" for c in plugin_cases())  # core ops' cases are in CASES
        True
    """
    return _collect()[0]


def plugin_case_errors() -> list[PluginCaseError]:
    """Why a plugin's cases are missing (``plugin_cases``), one entry per failed plugin."""
    return _collect()[1]


def _collect() -> tuple[list[Case], list[PluginCaseError]]:
    from .._plugins import manager
    from .._registry import REGISTRY

    m = manager()
    got = _PLUGIN_CASES.get(m.epoch)
    if got is not None:
        return got
    found: list[Case] = []
    errors: list[PluginCaseError] = []
    ids = {c.id for c in CASES}
    # NOTE: in registration order (entry points sort by name): of two cases with one id, the
    # first plugin's stays and the later one is reported
    for impl in m.pm.hook.oxcore_register_test_cases.get_hookimpls():
        info = m.plugins.get(impl.plugin_name)
        if info is not None and info.status != "loaded":
            continue
        mine: list[Case] = []

        def register(case: Any, _mine: list[Case] = mine) -> None:
            if not isinstance(case, Case):
                raise TypeError(f"register() expects an oxcore.testing.Case, got {type(case).__name__}")
            if case.op not in REGISTRY.ops:
                raise ValueError(f"case {case.id!r} is for op {case.op!r}, which no plugin registered")
            if case.id in ids:
                raise ValueError(f"case id {case.id!r} is taken (give the case a distinct name=)")
            ids.add(case.id)
            _mine.append(case)

        try:
            impl.function(register=register)
        except Exception as e:  # NOTE: one plugin's broken cases never hide the others'
            errors.append(PluginCaseError(impl.plugin_name,
                                          f"oxcore_register_test_cases raised {type(e).__name__}: {e}"))
            ids.difference_update(c.id for c in mine)
            continue
        found.extend(mine)
    _PLUGIN_CASES.clear()
    _PLUGIN_CASES[m.epoch] = (found, errors)
    return found, errors


def to_ref(a: np.ndarray) -> np.ndarray:
    """Reference inputs: floating values as float64 (complex as complex128), integers and
    bools unchanged."""
    d = _dtypes.dtype(a.dtype)
    return a.astype(np.float64) if d.is_floating else a.astype(np.complex128) if d.is_complex else a


def sample_for(op: str) -> Any:
    """A small lazy Array whose output node is ``op``, or None when no case is known.

    Example:
        >>> from oxcore.testing.cases import sample_for
        >>> sample_for("softmax")._node.op
        'softmax'
    """
    import oxcore as ox

    for c in cases_for(op):
        dt = c.dtypes[0]
        inputs, kw = c.make(dt, c.example(dt), 0)
        out = c.build(ox, *inputs, **kw)
        if getattr(out, "_node", None) is not None and out._node.op == op:
            return out
    from oxcore.extend import REGISTRY

    d = REGISTRY.ops.get(op)
    if d is not None and d.sample is not None:  # a plugin op's own sample
        out = d.sample(ox)
        if getattr(out, "_node", None) is not None and out._node.op == op:
            return out
    return None


# --- dtype groups (float32 first: samples use the first) -----------------------------------------
F = (_dtypes.float32, _dtypes.float64, _dtypes.float16, _dtypes.bfloat16)
INT = (_dtypes.int32, _dtypes.int64, _dtypes.int8, _dtypes.int16, _dtypes.uint8, _dtypes.uint16, _dtypes.uint32, _dtypes.uint64)
NUM = F + INT
ALL = NUM + (_dtypes.bool_,)
INT_BOOL = INT + (_dtypes.bool_,)
B = (_dtypes.bool_,)


# --- input generators ------------------------------------------------------------------------------
def rand(rng: np.random.Generator, shape: tuple[int, ...], dt: DType, lo: float = -3.0, hi: float = 3.0,
         ilo: int = -50, ihi: int = 50) -> np.ndarray:
    """Random values of ``dt``: floats uniform in [lo, hi) (both parts of complex ones), ints
    in [ilo, ihi] clipped to the dtype, bools half true. Never all zeros."""
    if dt is _dtypes.bool_:
        a = rng.random(shape) < 0.5
    elif dt.is_integer:
        info = np.iinfo(dt.numpy)
        a = rng.integers(max(ilo, int(info.min)), min(ihi, int(info.max)), size=shape, endpoint=True).astype(dt.numpy)
    elif dt.is_complex:
        a = (rng.uniform(lo, hi, size=shape) + 1j * rng.uniform(lo, hi, size=shape)).astype(dt.numpy)
    else:
        a = np.asarray(rng.uniform(lo, hi, size=shape)).astype(dt.numpy)
    a = np.asarray(a)
    if a.size and not a.any():
        a.flat[0] = 1 if (dt.kind != "f" or lo <= 1 < hi) else a.dtype.type((lo + hi) / 2 or hi)
    return a


def _discrete(rng, shape, dt, lo=-3, hi=3):
    """Small integers (ties, equal pairs) in any dtype."""
    if dt is _dtypes.bool_:
        return rand(rng, shape, dt)
    info_lo = 0 if dt.kind == "u" else lo
    a = np.asarray(rng.integers(info_lo, hi, size=shape, endpoint=True)).astype(dt.numpy)
    if a.size and not a.any():
        a.flat[0] = 1
    return a


def gen(lo: float = -3.0, hi: float = 3.0, ilo: int = -50, ihi: int = 50, edges: tuple = (),
        discrete: bool = False, edge_p: float = 0.25) -> Callable[..., list]:
    """Input generator: every input of ``dt`` from ``rand`` (or small integers), with a fraction
    ``edge_p`` of the float elements replaced by ``edges`` values."""
    def inputs(rng, dt, shapes, kw):
        out = []
        for s in shapes:
            a = _discrete(rng, s, dt) if discrete else rand(rng, s, dt, lo, hi, ilo, ihi)
            if edges and a.size and dt.is_floating:
                mask = rng.random(a.shape) < edge_p
                a = np.where(mask, np.asarray(rng.choice(edges, size=a.shape)).astype(dt.numpy), a).astype(dt.numpy)
            out.append(a)
        return out
    if edges or discrete:
        # NOTE: gradient checks need points where the function is smooth: no edge values, no ties
        inputs.smooth = gen(lo, hi, ilo, ihi)
    return inputs


def smooth(g: Callable[..., list]) -> Callable[..., list]:
    """The variant of an input generator without edge values or ties (for gradient checks)."""
    return getattr(g, "smooth", g)


def each(*gens: Callable[..., list]) -> Callable[..., list]:
    """One generator per input position (the last one repeats)."""
    def inputs(rng, dt, shapes, kw):
        return [gens[min(i, len(gens) - 1)](rng, dt, (s,), kw)[0] for i, s in enumerate(shapes)]
    if any(hasattr(g, "smooth") for g in gens):
        inputs.smooth = each(*map(smooth, gens))
    return inputs


def typed(dt_of: Callable[[DType, dict], DType], g: Callable[..., list] | None = None) -> Callable[..., list]:
    """A generator whose values come in another dtype (a bool condition, int indices...)."""
    g = g or gen()

    def inputs(rng, dt, shapes, kw):
        return g(rng, dt_of(dt, kw), shapes, kw)
    if hasattr(g, "smooth"):
        inputs.smooth = typed(dt_of, g.smooth)
    return inputs


# --- hypothesis strategies (imported lazily) ---------------------------------------------------
def _hyp():
    import hypothesis.extra.numpy as hnp
    import hypothesis.strategies as st

    return st, hnp


def composite(fn: Callable[..., Params]) -> Callable[[DType], Any]:
    """``fn(draw, dt) -> (shapes, kw)`` as a per-dtype hypothesis strategy."""
    def strategy(dt):
        st, _ = _hyp()
        return st.composite(lambda draw: fn(draw, dt))()
    return strategy


@functools.lru_cache(maxsize=None)  # NOTE: building strategies is slow; draws happen thousands of times
def shape_st(min_dims=0, max_dims=3, min_side=1, max_side=5):
    _, hnp = _hyp()
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


@functools.lru_cache(maxsize=None)
def axis_st(ndim: int, none: bool = True, multi: bool = True):
    st, _ = _hyp()
    opts = [st.integers(-ndim, ndim - 1)]
    if none:
        opts.append(st.none())
    if multi and ndim:
        opts.append(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple))
    return st.one_of(*opts)


@functools.lru_cache(maxsize=None)
def broadcastable_st(n: int, min_dims: int = 0, max_dims: int = 3, max_side: int = 4):
    """n mutually broadcastable shapes, as a tuple."""
    _, hnp = _hyp()
    return hnp.mutually_broadcastable_shapes(num_shapes=n, min_dims=min_dims, max_dims=max_dims, min_side=1,
                                             max_side=max_side).map(lambda bs: tuple(bs.input_shapes))


def p_shapes(n: int = 1, min_dims: int = 0, max_dims: int = 3, max_side: int = 5):
    """n mutually broadcastable shapes (one shape when n == 1)."""
    def fn(draw, dt):
        if n == 1:
            return (draw(shape_st(min_dims, max_dims, 1, max_side)),), {}
        return draw(broadcastable_st(n, min_dims, max_dims, max_side)), {}
    return composite(fn)


def const(*shapes: tuple[int, ...], **kw: Any) -> Callable[[DType], Params]:
    return lambda dt: (tuple(shapes), dict(kw))


def _fn(name: str, **fixed: Any) -> Callable[..., Any]:
    def build(ox, *xs, **kw):
        return getattr(ox, name)(*(ox.asarray(x) for x in xs), **fixed, **kw)
    build.__name__ = name
    return build


def case(op: str, build: Callable, ref: Callable, dtypes: tuple[DType, ...], params: Callable,
         example: Callable, inputs: Callable | None = None, **kw: Any) -> Case:
    c = Case(op, build, ref, dtypes, params, example, inputs or gen(), **kw)
    CASES.append(c)
    return c


def _int_safe(f: Callable) -> Callable:
    """Reference for ops that are the identity on integers (floor, ceil, round, trunc)."""
    return lambda x: f(x) if x.dtype.kind == "f" else x


def _bool_out(dt, kw):
    return _dtypes.bool_


_erf = np.vectorize(math.erf, otypes=[np.float64])

# --- elementwise unary -----------------------------------------------------------------------------
UNARY_ONE = p_shapes(1)
EX1 = const((3, 4))

for _op, _ref, _dts, _g in [
    ("negative", np.negative, NUM, gen()),
    ("abs", np.abs, NUM, gen()),
    ("sign", np.sign, NUM, gen(edges=(0.0,), ilo=-3, ihi=3)),
    ("exp", np.exp, F, gen(-4, 4)),
    ("expm1", np.expm1, F, gen(-2, 2, edges=(1e-3, -1e-4))),
    ("log", np.log, F, gen(0.05, 10)),
    ("log1p", np.log1p, F, gen(-0.9, 5, edges=(1e-3, -1e-4))),
    ("log2", np.log2, F, gen(0.05, 10)),
    ("log10", np.log10, F, gen(0.05, 10)),
    ("sqrt", np.sqrt, F, gen(0, 9)),
    ("rsqrt", lambda x: 1 / np.sqrt(x), F, gen(0.1, 9)),
    ("square", np.square, NUM, gen(ilo=-11, ihi=11)),
    ("reciprocal", np.reciprocal, F, each(gen(0.2, 3))),
    ("sin", np.sin, F, gen(-3, 3)),
    ("cos", np.cos, F, gen(-3, 3)),
    ("tan", np.tan, F, gen(-1.2, 1.2)),
    ("asin", np.arcsin, F, gen(-0.99, 0.99)),
    ("acos", np.arccos, F, gen(-0.99, 0.99)),
    ("atan", np.arctan, F, gen(-5, 5)),
    ("sinh", np.sinh, F, gen(-3, 3)),
    ("cosh", np.cosh, F, gen(-3, 3)),
    ("tanh", np.tanh, F, gen(-4, 4)),
    ("asinh", np.arcsinh, F, gen(-5, 5)),
    ("acosh", np.arccosh, F, gen(1.05, 6)),
    ("atanh", np.arctanh, F, gen(-0.9, 0.9)),
    ("erf", _erf, F, gen(-3, 3)),
    ("floor", _int_safe(np.floor), NUM, gen(-4, 4, edges=(-1.0, -0.5, 2.0))),
    ("ceil", _int_safe(np.ceil), NUM, gen(-4, 4, edges=(-1.0, -0.5, 2.0))),
    ("round", _int_safe(np.round), NUM, gen(-4, 4, edges=(-2.5, -1.5, -0.5, 0.5, 1.5, 2.5))),
    ("trunc", _int_safe(np.trunc), NUM, gen(-4, 4, edges=(-1.0, -0.5, 2.0))),
    ("bitwise_invert", np.invert, INT_BOOL, gen(ilo=-2**62, ihi=2**62)),
    ("logical_not", np.logical_not, B, gen()),
]:
    case(_op, _fn(_op), _ref, _dts, UNARY_ONE, EX1, _g)

for _op, _ref, _dts in [("isnan", np.isnan, NUM), ("isinf", np.isinf, NUM), ("isfinite", np.isfinite, NUM),
                        ("signbit", np.signbit, F)]:
    case(_op, _fn(_op), _ref, _dts, UNARY_ONE, EX1, gen(edges=(np.nan, np.inf, -np.inf, -0.0, 0.0)), out=_bool_out)

# --- elementwise binary ----------------------------------------------------------------------------
BIN = p_shapes(2)
EX2 = const((3, 4), (4,))
_nonzero_den = each(gen(), gen(0.5, 3, ilo=1, ihi=9))


def _signed_den(rng, dt, shapes, kw):
    a = rand(rng, shapes[0], dt, -6, 6, -40, 40)
    b = rand(rng, shapes[0 if len(shapes) == 1 else 1], dt, 0.5, 3, 1, 9)
    if dt.kind != "u":
        sign = np.where(rng.random(b.shape) < 0.5, -1, 1).astype(b.dtype)
        b = (b * sign).astype(dt.numpy)
    return [a, b]


def _pow_inputs(rng, dt, shapes, kw):
    if dt.is_floating:
        return [rand(rng, shapes[0], dt, 0.1, 3), rand(rng, shapes[1], dt, -2, 2)]
    return [rand(rng, shapes[0], dt, ilo=-3, ihi=3), rand(rng, shapes[1], dt, ilo=0, ihi=3)]


def _shift_inputs(left: bool):
    def inputs(rng, dt, shapes, kw):
        bits = 8 * dt.itemsize
        a = rand(rng, shapes[0], dt, ilo=0, ihi=15) if left else rand(rng, shapes[0], dt, ilo=-2**62, ihi=2**62)
        return [a, rand(rng, shapes[1], dt, ilo=0, ihi=bits - 5 if left else bits - 1)]
    return inputs


for _op, _ref, _dts, _g, _out in [
    ("add", np.add, NUM, gen(), None),
    ("subtract", np.subtract, NUM, gen(), None),
    ("multiply", np.multiply, NUM, gen(ilo=-11, ihi=11), None),
    ("divide", np.divide, F, _nonzero_den, None),
    ("floor_divide", np.floor_divide, NUM, _signed_den, None),
    ("remainder", np.remainder, NUM, _signed_den, None),
    ("pow", np.power, NUM, _pow_inputs, None),
    ("maximum", np.maximum, NUM, gen(discrete=True), None),
    ("minimum", np.minimum, NUM, gen(discrete=True), None),
    ("atan2", np.arctan2, F, gen(edges=(0.0, -0.0)), None),
    ("hypot", np.hypot, F, gen(), None),
    ("copysign", np.copysign, F, gen(edges=(0.0, -0.0)), None),
    ("logaddexp", np.logaddexp, F, gen(-5, 5, edges=(-np.inf, np.inf), edge_p=0.5), None),
    ("equal", np.equal, ALL, gen(discrete=True), _bool_out),
    ("not_equal", np.not_equal, ALL, gen(discrete=True), _bool_out),
    ("less", np.less, NUM, gen(discrete=True), _bool_out),
    ("less_equal", np.less_equal, NUM, gen(discrete=True), _bool_out),
    ("greater", np.greater, NUM, gen(discrete=True), _bool_out),
    ("greater_equal", np.greater_equal, NUM, gen(discrete=True), _bool_out),
    ("logical_and", np.logical_and, B, gen(), _bool_out),
    ("logical_or", np.logical_or, B, gen(), _bool_out),
    ("logical_xor", np.logical_xor, B, gen(), _bool_out),
    ("bitwise_and", np.bitwise_and, INT_BOOL, gen(ilo=-2**62, ihi=2**62), None),
    ("bitwise_or", np.bitwise_or, INT_BOOL, gen(ilo=-2**62, ihi=2**62), None),
    ("bitwise_xor", np.bitwise_xor, INT_BOOL, gen(ilo=-2**62, ihi=2**62), None),
    ("bitwise_left_shift", np.left_shift, INT, _shift_inputs(True), None),
    ("bitwise_right_shift", np.right_shift, INT, _shift_inputs(False), None),
]:
    case(_op, _fn(_op), _ref, _dts, BIN, EX2, _g, out=_out)


# mixed dtypes: the Array API promotion table, then the op
def _partners(dt: DType) -> list[DType]:
    out = []
    for p in ALL:
        try:
            r = _dtypes.result_type_pair(dt, p)
        except Exception:
            continue
        if p is not dt and r.is_numeric:
            out.append(p)
    return out


def _p_promote(draw, dt):
    st, _ = _hyp()
    return draw(broadcastable_st(2)), {"partner": draw(st.sampled_from(_partners(dt)))}


def _promote_inputs(rng, dt, shapes, kw):
    return [rand(rng, shapes[0], dt, ilo=-20, ihi=20), rand(rng, shapes[1], kw["partner"], ilo=-20, ihi=20)]


def _promoted(f):
    def ref(a, b, *, partner):
        return f(a, b) if a.dtype.kind == "f" or b.dtype.kind == "f" else f(a.astype(np.int64), b.astype(np.int64))
    return ref


def _promote_out(dt, kw):
    return _dtypes.result_type_pair(dt, kw["partner"])


for _op, _f in [("add", np.add), ("multiply", np.multiply), ("maximum", np.maximum)]:
    case(_op, (lambda name: lambda ox, a, b, *, partner: getattr(ox, name)(ox.asarray(a), ox.asarray(b)))(_op),
         _promoted(_f), tuple(d for d in NUM if d is not _dtypes.uint64 and d is not _dtypes.int64), composite(_p_promote),
         lambda dt: (((3, 4), (4,)), {"partner": _partners(dt)[0]}), _promote_inputs, out=_promote_out,
         name="promote", tol=2.0)


# Python scalars take the array's dtype (Array API)
def _scalar_kw(dt):
    return 3 if dt.is_integer else (True if dt is _dtypes.bool_ else 2.5)


for _op, _f in [("add", np.add), ("subtract", np.subtract), ("multiply", np.multiply)]:
    case(_op, (lambda name: lambda ox, a, *, s, right: getattr(ox, name)(s, ox.asarray(a)) if right
               else getattr(ox, name)(ox.asarray(a), s))(_op),
         (lambda f: lambda a, *, s, right: f(np.asarray(s, a.dtype), a) if right else f(a, np.asarray(s, a.dtype)))(_f),
         tuple(d for d in NUM if d.kind != "u"),
         composite(lambda draw, dt: ((draw(shape_st()),), {"s": _scalar_kw(dt), "right": draw(_hyp()[0].booleans())})),
         lambda dt: (((3, 4),), {"s": _scalar_kw(dt), "right": False}), name="scalar")

# --- ternary, casts, clip ------------------------------------------------------------------------
case("where", _fn("where"), np.where, ALL, p_shapes(3), const((3, 1), (3, 4), (4,)),
     each(typed(lambda dt, kw: _dtypes.bool_), gen()))


def _astype_inputs(rng, dt, shapes, kw):
    t = kw["dtype"]
    unsigned = t.kind == "u" or dt.kind == "u"
    return [rand(rng, shapes[0], dt, 0 if unsigned else -3, 3 if t.kind in "iu" else 3,
                 0 if unsigned else -50, 50)]


def _astype_ref(x, *, dtype):
    if dtype is _dtypes.bool_:
        return x != 0
    if dtype.is_floating:
        return x.astype(np.float64)
    return (np.trunc(x) if x.dtype.kind == "f" else x).astype(dtype.numpy)


case("astype", lambda ox, x, *, dtype: ox.astype(ox.asarray(x), dtype), _astype_ref, ALL,
     composite(lambda draw, dt: ((draw(shape_st()),), {"dtype": draw(_hyp()[0].sampled_from(ALL))})),
     lambda dt: (((3, 4),), {"dtype": _dtypes.float16 if dt is not _dtypes.float16 else _dtypes.int32}), _astype_inputs,
     out=lambda dt, kw: kw["dtype"])


def _p_clip(draw, dt):
    st, _ = _hyp()
    lo = 0 if dt.kind == "u" else -2
    if dt.is_floating:
        a, b = draw(st.sampled_from([-2.0, -1.5, -0.25, 0.0])), draw(st.sampled_from([0.5, 1.0, 2.0]))
    else:
        a, b = draw(st.integers(lo, 1)), draw(st.integers(2, 20))
    which = draw(st.sampled_from(["both", "min", "max"]))
    return (draw(shape_st()),), {"min": None if which == "max" else a, "max": None if which == "min" else b}


case("clip", lambda ox, x, *, min, max: ox.clip(ox.asarray(x), min, max),
     lambda x, *, min, max: np.clip(x, min, max), NUM, composite(_p_clip),
     lambda dt: (((3, 4),), {"min": 1, "max": 2}))

# --- creation -----------------------------------------------------------------------------------
def _fill_value(dt):
    if dt is _dtypes.bool_:
        return True
    if dt.is_integer:
        return 7 if dt.kind == "u" else -3
    return 2.5


case("full", lambda ox, *, shape, value, dtype: ox.full(shape, value, dtype=dtype),
     lambda *, shape, value, dtype: np.full(shape, value, np.float64 if dtype.is_floating else dtype.numpy), ALL,
     composite(lambda draw, dt: ((), {"shape": draw(shape_st()), "value": _fill_value(dt), "dtype": dt})),
     lambda dt: ((), {"shape": (2, 3), "value": _fill_value(dt), "dtype": dt}))


def _p_arange(draw, dt):
    st, _ = _hyp()
    n = draw(st.integers(2, 20))
    if dt.is_floating:
        start = draw(st.sampled_from([-3.0, -0.5, 0.0, 1.25]))
        step = draw(st.sampled_from([0.5, 0.25, 1.0, -0.5]))
    else:
        start = draw(st.integers(0 if dt.kind == "u" else -5, 5))
        step = draw(st.sampled_from([1, 2, 3] if dt.kind == "u" else [1, 2, 3, -1, -2]))
        if dt.kind == "u" and start == 0 and step == 1:
            start = 1
        if step < 0:
            start = start + n * -step
    if dt.itemsize == 1:
        n = min(n, 10)
    return (), {"start": start, "stop": start + step * n - (step / 2 if dt.is_floating else 0), "step": step,
                "dtype": dt}


case("arange", lambda ox, *, start, stop, step, dtype: ox.arange(start, stop, step, dtype=dtype),
     lambda *, start, stop, step, dtype: np.arange(start, stop, step, dtype=np.float64), NUM,
     composite(_p_arange), lambda dt: ((), {"start": 1, "stop": 7, "step": 2, "dtype": dt}))


def _p_linspace(draw, dt):
    st, _ = _hyp()
    return (), {"start": draw(st.sampled_from([-5.0, -1.0, 0.5, 2.0])), "stop": draw(st.sampled_from([-2.0, 3.0, 7.5])),
                "num": draw(st.integers(2, 12)), "endpoint": draw(st.booleans()), "dtype": dt}


case("linspace", lambda ox, *, start, stop, num, endpoint, dtype: ox.linspace(start, stop, num, dtype=dtype,
                                                                                  endpoint=endpoint),
     lambda *, start, stop, num, endpoint, dtype: np.linspace(start, stop, num, endpoint=endpoint), F,
     composite(_p_linspace), lambda dt: ((), {"start": 0.0, "stop": 1.0, "num": 5, "endpoint": True, "dtype": dt}),
     tol=2.0)


def _p_eye(draw, dt):
    st, _ = _hyp()
    n, m = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    return (), {"n_rows": n, "n_cols": m, "k": draw(st.integers(-(n - 1), m - 1)), "dtype": dt}


case("eye", lambda ox, *, n_rows, n_cols, k, dtype: ox.eye(n_rows, n_cols, k=k, dtype=dtype),
     lambda *, n_rows, n_cols, k, dtype: np.eye(n_rows, n_cols, k), ALL, composite(_p_eye),
     lambda dt: ((), {"n_rows": 3, "n_cols": 4, "k": 1, "dtype": dt}))


def _murmur_ref(*, shape, seed):
    x = np.arange(math.prod(shape), dtype=np.uint64)
    m = np.uint64(0xFFFFFFFF)
    x = (x ^ np.uint64((seed * 0x9E3779B9 + 0x632BE5AB) & 0xFFFFFFFF)) & m
    for mul, sh in ((0x85EBCA6B, 16), (0xC2B2AE35, 13)):
        x = x ^ (x >> np.uint64(sh))
        x = (x * np.uint64(mul)) & m
    x = x ^ (x >> np.uint64(16))
    return x.astype(np.uint32).reshape(shape)


case("random_bits", lambda ox, *, shape, seed: ox.random.random_bits(shape, seed=seed), _murmur_ref, (_dtypes.uint32,),
     composite(lambda draw, dt: ((), {"shape": draw(shape_st(min_dims=1)),
                                      "seed": draw(_hyp()[0].integers(0, 2**32 - 1))})),
     lambda dt: ((), {"shape": (4, 5), "seed": 7}))


def _unit_ref(shape, seed):
    """``random_uniform``'s [0, 1) draw: the 24 high bits of ``random_bits``, exact in float32."""
    return (_murmur_ref(shape=shape, seed=seed) >> np.uint32(8)).astype(np.float64) / (1 << 24)


def _uniform_ref(*, shape, seed, low, high, dtype):
    return _unit_ref(shape, seed) * np.float32(high - low) + np.float32(low)


def _normal_ref(*, shape, seed, mean, std, dtype):
    # NOTE: the op draws in float32 whatever the dtype; the angle is rounded to float32 before
    # cos (as every backend computes it), the rest is float64
    u1 = 1.0 - _unit_ref(shape, seed)
    angle = _unit_ref(shape, (seed ^ 0x5BD1E995) & 0xFFFFFFFF).astype(np.float32) * np.float32(2 * math.pi)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(angle.astype(np.float64)) * np.float32(std) + np.float32(mean)


def _randint_ref(*, shape, seed, low, high, dtype):
    return (_murmur_ref(shape=shape, seed=seed) % np.uint32(high - low)).astype(np.int64) + low


def _p_draw(**ranges: Callable[[Any, DType], Any]) -> Callable[[DType], Any]:
    """(no inputs, shape, seed and the given attributes drawn, dtype) for a random op."""
    return composite(lambda draw, dt: ((), {"shape": draw(shape_st(min_dims=1)),
                                            "seed": draw(_hyp()[0].integers(0, 2**32 - 1)), "dtype": dt,
                                            **{k: draw(f(_hyp()[0], dt)) for k, f in ranges.items()}}))


# NOTE: draws are made in float32 (the ops define it), so float64 results carry float32 error
_DRAW_TOL = {"float64": 1e7, "float32": 2.0}
case("random_uniform", lambda ox, *, shape, seed, low, high, dtype: ox.random.uniform(shape, low, high, dtype=dtype,
                                                                                       seed=seed),
     _uniform_ref, F, _p_draw(low=lambda st, dt: st.floats(-4, 0), high=lambda st, dt: st.floats(0.5, 4)),
     lambda dt: ((), {"shape": (4, 5), "seed": 7, "low": -1.0, "high": 2.0, "dtype": dt}), tol=_DRAW_TOL)
case("random_normal", lambda ox, *, shape, seed, mean, std, dtype: ox.random.normal(shape, mean, std, dtype=dtype,
                                                                                     seed=seed),
     _normal_ref, F, _p_draw(mean=lambda st, dt: st.floats(-2, 2), std=lambda st, dt: st.floats(0.1, 3)),
     lambda dt: ((), {"shape": (4, 5), "seed": 7, "mean": 0.5, "std": 2.0, "dtype": dt}), tol=_DRAW_TOL)
case("random_randint", lambda ox, *, shape, seed, low, high, dtype: ox.random.randint(low, high, shape, dtype=dtype,
                                                                                       seed=seed),
     _randint_ref, INT, _p_draw(low=lambda st, dt: st.integers(0 if dt in _dtypes.UNSIGNED else -20, 10),
                                high=lambda st, dt: st.integers(11, 100)),
     lambda dt: ((), {"shape": (4, 5), "seed": 7, "low": 3, "high": 60, "dtype": dt}))

# --- reductions ----------------------------------------------------------------------------------
def _accum(dt: DType) -> DType:
    return _dtypes.int64 if dt is _dtypes.bool_ or dt in _dtypes.SIGNED else _dtypes.uint64 if dt in _dtypes.UNSIGNED else dt


def p_reduce(max_side: int = 5, **extra: Callable[[Any], Any]):
    def fn(draw, dt):
        st, _ = _hyp()
        shape = draw(shape_st(1, 3, 1, max_side))
        kw = {"axis": draw(axis_st(len(shape))), "keepdims": draw(st.booleans())}
        kw.update({k: draw(v(st)) for k, v in extra.items()})
        return (shape,), kw
    return composite(fn)


EXR = const((3, 4), axis=1, keepdims=False)


def _acc_ref(f):
    def ref(x, *, axis, keepdims):
        acc = {"f": np.float64, "c": np.complex128, "u": np.uint64}.get(x.dtype.kind, np.int64)
        return f(x.astype(acc), axis=axis, keepdims=keepdims)
    return ref


case("sum", _fn("sum"), _acc_ref(np.sum), NUM, p_reduce(), EXR, gen(), out=lambda dt, kw: _accum(dt), tol=2.0)
case("prod", _fn("prod"), _acc_ref(np.prod), NUM, p_reduce(max_side=3), EXR, gen(0.5, 1.5, ilo=-2, ihi=2),
     out=lambda dt, kw: _accum(dt), tol=2.0)
case("max", _fn("max"), np.max, ALL, p_reduce(), EXR, gen(edges=(-np.inf,)))
case("min", _fn("min"), np.min, ALL, p_reduce(), EXR, gen(edges=(np.inf,)))
case("all", _fn("all"), lambda x, **kw: np.all(x != 0, **kw), ALL, p_reduce(), EXR, gen(discrete=True),
     out=_bool_out)
case("any", _fn("any"), lambda x, **kw: np.any(x != 0, **kw), ALL, p_reduce(), EXR, gen(discrete=True),
     out=_bool_out)


def _p_arg(draw, dt):
    st, _ = _hyp()
    shape = draw(shape_st(1, 3))
    return (shape,), {"axis": draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1))),
                      "keepdims": draw(st.booleans())}


for _op, _f in [("argmax", np.argmax), ("argmin", np.argmin)]:
    case(_op, _fn(_op), (lambda f: lambda x, *, axis, keepdims: f(x, axis=axis, keepdims=keepdims))(_f), NUM,
         composite(_p_arg), EXR, gen(discrete=True), out=lambda dt, kw: _dtypes.int64)


def _p_cum(draw, dt):
    st, _ = _hyp()
    shape = draw(shape_st(1, 3, 1, 4))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return (shape,), {"axis": None if len(shape) == 1 and draw(st.booleans()) else axis,
                      "include_initial": draw(st.booleans())}


def _cum_ref(f, init):
    def ref(x, *, axis, include_initial):
        axis = 0 if axis is None else axis
        acc = {"f": np.float64, "c": np.complex128, "u": np.uint64}.get(x.dtype.kind, np.int64)
        out = f(x.astype(acc), axis=axis)
        if include_initial:
            s = list(out.shape)
            s[axis] = 1
            out = np.concatenate([np.full(s, init, acc), out], axis=axis)
        return out
    return ref


case("cumulative_sum", _fn("cumulative_sum"), _cum_ref(np.cumsum, 0), NUM, composite(_p_cum),
     const((3, 4), axis=1, include_initial=False), gen(), out=lambda dt, kw: _accum(dt), tol=2.0)
case("cumulative_prod", _fn("cumulative_prod"), _cum_ref(np.cumprod, 1), NUM, composite(_p_cum),
     const((3, 4), axis=1, include_initial=True), gen(0.5, 1.5, ilo=-2, ihi=2), out=lambda dt, kw: _accum(dt), tol=2.0)
case("mean", _fn("mean"), np.mean, F, p_reduce(), EXR, gen(-3, 5), tol=2.0)


def _var_ref(sqrt: bool):
    def ref(x, *, axis, keepdims, correction):
        axes = tuple(range(x.ndim)) if axis is None else (axis,) if isinstance(axis, int) else axis
        n = math.prod(x.shape[a] for a in axes)
        d = x - x.mean(axis=axis, keepdims=True)
        v = np.sum(d * d, axis=axis, keepdims=keepdims) / (n - correction) if n - correction > 0 else \
            np.full(np.sum(x, axis=axis, keepdims=keepdims).shape, np.nan)
        return np.sqrt(v) if sqrt else v
    return ref


for _op in ("var", "std"):
    case(_op, _fn(_op), _var_ref(_op == "std"), F, p_reduce(correction=lambda st: st.sampled_from([0.0, 1.0])),
         const((3, 4), axis=1, keepdims=False, correction=1.0), gen(-3, 5), tol=4.0)


def _lse_ref(x, *, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


case("logsumexp", _fn("logsumexp"), _lse_ref, F, p_reduce(), EXR, gen(-5, 5, edges=(-np.inf,)), tol=2.0)

# --- linear algebra ------------------------------------------------------------------------------
def _p_matmul(draw, dt):
    st, _ = _hyp()
    m, k, n, b = (draw(st.integers(1, 5)) for _ in range(4))
    form = draw(st.sampled_from(["2d", "batched", "broadcast", "vec-mat", "mat-vec", "vec-vec"]))
    shapes = {"2d": ((m, k), (k, n)), "batched": ((b, m, k), (b, k, n)), "broadcast": ((b, 1, m, k), (2, k, n)),
              "vec-mat": ((k,), (b, k, n)), "mat-vec": ((b, m, k), (k,)), "vec-vec": ((k,), (k,))}[form]
    return shapes, {}


_MM_TOL = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "float64": 4.0}
case("matmul", _fn("matmul"), np.matmul, NUM, composite(_p_matmul), const((3, 4), (4, 5)), gen(ilo=-3, ihi=3),
     tol=_MM_TOL)


def _p_tensordot(draw, dt):
    st, _ = _hyp()
    a = draw(shape_st(1, 3, 1, 4))
    n = draw(st.integers(0, len(a)))
    b = a[len(a) - n:] + draw(shape_st(0, 2, 1, 3))
    if draw(st.booleans()) or n == 0:
        return (a, b), {"axes": n}
    perm = draw(st.permutations(list(range(n))))
    ax_a = tuple(len(a) - n + i for i in range(n))
    ax_b = tuple(perm)
    b = tuple(a[ax_a[list(ax_b).index(j)]] if j < n else b[j] for j in range(len(b)))
    return (a, b), {"axes": (ax_a, ax_b)}


case("tensordot", _fn("tensordot"), lambda a, b, *, axes: np.tensordot(a, b, axes=axes), NUM,
     composite(_p_tensordot), const((2, 3, 4), (3, 4, 5), axes=2), gen(ilo=-3, ihi=3), tol=_MM_TOL)


def _p_vecdot(draw, dt):
    st, _ = _hyp()
    a, b = draw(broadcastable_st(2, 1))
    k = draw(st.integers(1, 5))
    axis = draw(st.integers(-min(len(a), len(b)), -1))
    a, b = list(a), list(b)
    a[axis], b[axis] = k, k
    return (tuple(a), tuple(b)), {"axis": axis}


case("vecdot", _fn("vecdot"), lambda a, b, *, axis: np.sum(a * b, axis=axis), NUM, composite(_p_vecdot),
     const((2, 3), (3,), axis=-1), gen(ilo=-3, ihi=3), tol=_MM_TOL)

# --- manipulation ----------------------------------------------------------------------------------
def _p_broadcast(draw, dt):
    st, _ = _hyp()
    target = draw(shape_st(1, 4, 1, 4))
    k = draw(st.integers(0, len(target)))
    src = tuple(1 if draw(st.booleans()) else d for d in target[k:])
    if src == target:
        target = (2,) + target
    return (src,), {"shape": target}


case("broadcast_to", _fn("broadcast_to"), lambda x, *, shape: np.broadcast_to(x, shape), ALL,
     composite(_p_broadcast), const((1, 4), shape=(3, 4)))


def _p_concat(draw, dt):
    st, _ = _hyp()
    base = draw(shape_st(1, 3, 1, 4))
    axis = draw(st.integers(-len(base), len(base) - 1))
    shapes = []
    for _ in range(draw(st.integers(2, 3))):
        s = list(base)
        s[axis] = draw(st.integers(1, 4))
        shapes.append(tuple(s))
    return tuple(shapes), {"axis": axis}


case("concat", lambda ox, *xs, axis: ox.concat([ox.asarray(x) for x in xs], axis=axis),
     lambda *xs, axis: np.concatenate(xs, axis=axis), ALL, composite(_p_concat), const((2, 3), (4, 3), axis=0))
case("flip", _fn("flip"), lambda x, *, axis: np.flip(x, axis), ALL,
     composite(lambda draw, dt: (lambda s: ((s,), {"axis": draw(axis_st(len(s)))}))(draw(shape_st(1, 3)))),
     const((3, 4), axis=None))


def _p_pad(draw, dt):
    st, _ = _hyp()
    s = draw(shape_st(1, 3, 1, 4))
    w = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in s)
    if not any(a or b for a, b in w):
        w = ((1, 0),) + w[1:]
    value = True if dt is _dtypes.bool_ else draw(st.integers(0, 5)) if dt.is_integer else draw(st.sampled_from([0.0, -1.5]))
    return (s,), {"pad_width": w, "value": value}


case("pad", lambda ox, x, *, pad_width, value: ox.pad(ox.asarray(x), pad_width, value=value),
     lambda x, *, pad_width, value: np.pad(x, pad_width, constant_values=value), ALL, composite(_p_pad),
     const((2, 3), pad_width=((1, 0), (0, 2)), value=1))


def _p_permute(draw, dt):
    st, _ = _hyp()
    s = draw(shape_st(2, 4, 1, 4))
    p = tuple(draw(st.permutations(list(range(len(s))))))
    if p == tuple(range(len(s))):
        p = p[::-1]
    return (s,), {"axes": p}


case("permute_dims", _fn("permute_dims"), lambda x, *, axes: np.transpose(x, axes), ALL, composite(_p_permute),
     const((2, 3, 4), axes=(2, 0, 1)))


def _p_reshape(draw, dt):
    st, _ = _hyp()
    s = draw(shape_st(0, 3))
    n = math.prod(s)
    opts = [(n,), (1, n), tuple(reversed(s)) + (1,), s + (1,)]
    divs = [d for d in range(2, n) if n % d == 0]
    if divs:
        d = draw(st.sampled_from(divs))
        opts.append((d, n // d))
    t = draw(st.sampled_from([o for o in opts if o != s] or [(1,) + s]))
    return (s,), {"shape": t}


case("reshape", _fn("reshape"), lambda x, *, shape: np.reshape(x, shape), ALL, composite(_p_reshape),
     const((2, 6), shape=(3, 4)))


def _p_roll(draw, dt):
    st, _ = _hyp()
    s = draw(shape_st(1, 3))
    if draw(st.booleans()):
        return (s,), {"shift": draw(st.integers(-7, 7)), "axis": None}
    axes = draw(st.lists(st.integers(0, len(s) - 1), min_size=1, max_size=len(s), unique=True))
    return (s,), {"shift": tuple(draw(st.integers(-7, 7)) for _ in axes), "axis": tuple(axes)}


case("roll", _fn("roll"), lambda x, *, shift, axis: np.roll(x, shift, axis), ALL, composite(_p_roll),
     const((3, 4), shift=1, axis=1))


def _p_tile(draw, dt):
    st, _ = _hyp()
    return (draw(shape_st(0, 3, 1, 3)),), {"repetitions": tuple(draw(st.lists(st.integers(1, 3), min_size=1,
                                                                              max_size=3)))}


case("tile", _fn("tile"), lambda x, *, repetitions: np.tile(x, repetitions), ALL, composite(_p_tile),
     const((2, 3), repetitions=(2, 1)))

# --- indexing ---------------------------------------------------------------------------------------
def _p_slice(draw, dt):
    st, _ = _hyp()
    s = draw(shape_st(1, 3))
    key = []
    for d in s:
        step = draw(st.sampled_from([1, 1, 2, -1, -2]))
        key.append((draw(st.one_of(st.none(), st.integers(-d - 1, d + 1))),
                    draw(st.one_of(st.none(), st.integers(-d - 1, d + 1))), step))
    if all(k[2] > 0 and slice(*k).indices(d) == (0, d, 1) for k, d in zip(key, s)):
        key[0] = (1, None, 1)  # NOTE: a key that selects everything builds no slice node
    return (s,), {"key": tuple(key)}


def _slices(key):
    return tuple(slice(*k) for k in key)


case("slice", lambda ox, x, *, key: ox.asarray(x)[_slices(key)], lambda x, *, key: x[_slices(key)], ALL,
     composite(_p_slice), const((4, 5), key=((1, 3, 1), (None, None, -2))))


def _p_index(draw, dt):
    st, hnp = _hyp()
    form = draw(st.sampled_from(["first", "middle", "adjacent", "apart", "mask"]))
    s = draw(shape_st(3 if form == "apart" else 2 if form in ("middle", "adjacent") else 1, 3, 1, 4))
    ishape = draw(shape_st(0, 2, 1, 3))
    ishape2 = draw(hnp.broadcastable_shapes(ishape, min_dims=0, max_dims=2, max_side=3))
    return (s, ishape, ishape2), {"form": form}


def _index_inputs(rng, dt, shapes, kw):
    s, i1, i2 = shapes
    x = rand(rng, s, dt)
    form = kw["form"]
    if form == "mask":
        m = rng.random(s) < 0.5
        m.flat[0] = True
        return [x, m]
    a1 = {"first": 0, "middle": 1, "adjacent": 0, "apart": 0}[form]
    a2 = {"adjacent": 1, "apart": 2}.get(form)
    idx = [rng.integers(-s[a1], s[a1], size=i1)]
    if a2 is not None:
        idx.append(rng.integers(-s[a2], s[a2], size=i2).astype(np.int32))
    return [x, *idx]


def _index_key(form, idx):
    return {"first": lambda: (idx[0],), "middle": lambda: (slice(None), idx[0]), "adjacent": lambda: (idx[0], idx[1]),
            "apart": lambda: (idx[0], slice(None), idx[1]), "mask": lambda: (idx[0],)}[form]()


case("index", lambda ox, x, *idx, form: ox.asarray(x)[_index_key(form, [ox.asarray(i) for i in idx])],
     lambda x, *idx, form: x[_index_key(form, list(idx))], ALL, composite(_p_index),
     const((3, 4), (2,), (2,), form="adjacent"), _index_inputs)


def _p_update(draw, dt):
    st, _ = _hyp()
    form = draw(st.sampled_from(["slice", "int", "array", "mask", "scalar"]))
    s = draw(shape_st(1, 3, 2, 5))
    return (s,), {"form": form}


def _update_parts(rng, s, form):
    if form == "slice":
        return (slice(1, None, 2),)
    if form == "int":
        return (int(rng.integers(-s[0], s[0])),)
    if form == "array":
        return (rng.permutation(s[0])[:max(1, s[0] // 2)].astype(np.int64),)
    if form == "mask":
        m = rng.random(s) < 0.5
        m.flat[0] = True
        return (m,)
    return (slice(0, 1),)


def _update_inputs(rng, dt, shapes, kw):
    s = shapes[0]
    x = rand(rng, s, dt)
    key = _update_parts(rng, s, kw["form"])
    region = x[key].shape
    v = rand(rng, region[1:] if kw["form"] != "scalar" and len(region) > 1 else (), dt)
    return [x, v, *[np.asarray(k) for k in key if not isinstance(k, slice)]]


def _update_key(form, extra):
    if form == "slice":
        return (slice(1, None, 2),)
    if form == "scalar":
        return (slice(0, 1),)
    if form == "int":
        return (int(extra[0]),)
    return (extra[0],)


def _update_build(ox, x, v, *extra, form):
    y = ox.asarray(x)
    key = _update_key(form, [e if form == "int" else ox.asarray(e) for e in extra])
    y[key] = ox.asarray(v)
    return y


def _update_ref(x, v, *extra, form):
    y = x.copy()
    y[_update_key(form, list(extra))] = v
    return y


case("index_update", _update_build, _update_ref, ALL, composite(_p_update), const((4, 3), form="slice"),
     _update_inputs)


def _p_take(draw, dt):
    st, _ = _hyp()
    s = draw(shape_st(1, 3))
    axis = draw(st.one_of(st.none(), st.integers(-len(s), len(s) - 1)))
    return (s, draw(shape_st(0, 2, 1, 4))), {"axis": axis}


def _take_inputs(rng, dt, shapes, kw):
    s, i = shapes
    n = math.prod(s) if kw["axis"] is None else s[kw["axis"]]
    return [rand(rng, s, dt), rng.integers(-n, n, size=i)]


case("take", _fn("take"), lambda x, i, *, axis: np.take(x, i, axis=axis), ALL, composite(_p_take),
     const((3, 4), (2,), axis=1), _take_inputs)


def _p_tak(draw, dt):
    st, _ = _hyp()
    s = draw(shape_st(1, 3, 1, 4))
    axis = draw(st.integers(-len(s), len(s) - 1))
    i = tuple(draw(st.integers(1, 4)) if a == axis % len(s) else draw(st.sampled_from([1, d]))
              for a, d in enumerate(s))
    return (s, i), {"axis": axis}


def _tak_inputs(rng, dt, shapes, kw):
    s, i = shapes
    n = s[kw["axis"]]
    return [rand(rng, s, dt), rng.integers(0, n, size=i)]


case("take_along_axis", _fn("take_along_axis"),
     lambda x, i, *, axis: np.take_along_axis(x, np.broadcast_to(i, tuple(
         i.shape[a] if a == axis % x.ndim else x.shape[a] for a in range(x.ndim))), axis=axis), ALL,
     composite(_p_tak), const((3, 4), (3, 1), axis=1), _tak_inputs)

# --- nn -------------------------------------------------------------------------------------------
def _p_axis(min_dims=1):
    def fn(draw, dt):
        st, _ = _hyp()
        s = draw(shape_st(min_dims, 3))
        return (s,), {"axis": draw(st.integers(-len(s), len(s) - 1))}
    return composite(fn)


def _softmax_ref(x, *, axis):
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - np.where(np.isfinite(m), m, 0))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax_ref(x, *, axis):
    m = np.max(x, axis=axis, keepdims=True)
    s = x - np.where(np.isfinite(m), m, 0)
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def _neginf_rows(rng, dt, shapes, kw):
    """Some -inf entries, and (when there are several rows) one row entirely -inf."""
    x = rand(rng, shapes[0], dt, -5, 5)
    if x.ndim == 0:
        return [x]
    x = np.ascontiguousarray(np.moveaxis(x, kw["axis"], -1))
    flat = x.reshape(-1, x.shape[-1])
    flat[rng.random(flat.shape) < 0.3] = -np.inf
    flat[:, -1] = rand(rng, (flat.shape[0],), dt, -5, 5)
    if flat.shape[0] > 1:
        flat[0] = -np.inf
    return [np.ascontiguousarray(np.moveaxis(flat.reshape(x.shape), -1, kw["axis"]))]


for _op, _ref in [("softmax", _softmax_ref), ("log_softmax", _log_softmax_ref)]:
    case(_op, _fn(_op), _ref, F, _p_axis(), const((3, 4), axis=-1), gen(-5, 5), tol=2.0)
    case(_op, _fn(_op), _ref, F, _p_axis(2), const((3, 4), axis=-1), _neginf_rows, name="neginf", tol=2.0)

case("relu", _fn("relu"), lambda x: np.maximum(x, 0), F, UNARY_ONE, EX1, gen(-5, 5, edges=(0.0, -0.0)))
case("sigmoid", _fn("sigmoid"), lambda x: 1 / (1 + np.exp(-x)), F, UNARY_ONE, EX1, gen(-8, 8))
case("silu", _fn("silu"), lambda x: x / (1 + np.exp(-x)), F, UNARY_ONE, EX1, gen(-8, 8), tol=2.0)


def _gelu_ref(x, *, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


case("gelu", _fn("gelu"), _gelu_ref, F,
     composite(lambda draw, dt: ((draw(shape_st()),), {"approximate": draw(_hyp()[0].sampled_from(["none", "tanh"]))})),
     const((3, 4), approximate="none"), gen(-4, 4), tol=2.0)


def _p_norm(*flags: str):
    def fn(draw, dt):
        st, _ = _hyp()
        s = draw(shape_st(1, 3, 1, 6))
        kw = {f: draw(st.booleans()) for f in flags}
        n_params = sum(kw.values())
        kw["eps"] = draw(st.sampled_from([1e-5, 1e-6, 0.1]))
        return (s,) + (s[-1:],) * n_params, kw
    return composite(fn)


def _norm_inputs(rng, dt, shapes, kw):
    return [rand(rng, shapes[0], dt, -2, 4)] + [rand(rng, s, dt, 0.5, 1.5) for s in shapes[1:]]


def _layer_norm_build(ox, x, *wb, eps, has_weight, has_bias):
    wb = [ox.asarray(p) for p in wb]
    w = wb.pop(0) if has_weight else None
    return ox.layer_norm(ox.asarray(x), w, wb[0] if has_bias else None, eps=eps)


def _layer_norm_ref(x, *wb, eps, has_weight, has_bias):
    d = x - x.mean(axis=-1, keepdims=True)
    y = d / np.sqrt((d * d).mean(axis=-1, keepdims=True) + eps)
    if has_weight:
        y = y * wb[0]
    return y + wb[-1] if has_bias else y


case("layer_norm", _layer_norm_build, _layer_norm_ref, F, _p_norm("has_weight", "has_bias"),
     const((3, 8), (8,), (8,), eps=1e-5, has_weight=True, has_bias=True), _norm_inputs, tol=4.0)


def _p_rms(draw, dt):
    st, _ = _hyp()
    s = draw(shape_st(1, 3, 1, 6))
    w = draw(st.booleans())
    return (s,) + ((s[-1:],) if w else ()), {"eps": draw(st.sampled_from([1e-5, 1e-6, 0.1]))}


case("rms_norm", lambda ox, x, *w, eps: ox.rms_norm(ox.asarray(x), *(ox.asarray(v) for v in w), eps=eps),
     lambda x, *w, eps: x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * (w[0] if w else 1), F,
     composite(_p_rms), const((3, 8), (8,), eps=1e-5), _norm_inputs, tol=4.0)


def _p_rope(draw, dt):
    st, _ = _hyp()
    lead = draw(shape_st(0, 2, 1, 3))
    T, half = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    D_ = 2 * half + draw(st.sampled_from([0, 0, 2]))
    return (lead + (T, D_),), {"dims": 2 * draw(st.integers(1, half)), "traditional": draw(st.booleans()),
                               "base": draw(st.sampled_from([10000.0, 500.0])),
                               "scale": draw(st.sampled_from([1.0, 0.5])), "offset": draw(st.integers(0, 16))}


def _rope_ref(x, *, dims, traditional, base, scale, offset):
    T = x.shape[-2]
    half = dims // 2
    theta = ((np.arange(T) + offset) * scale)[:, None] * (base ** (-2.0 * np.arange(half) / dims))[None, :]
    c, s = np.cos(theta), np.sin(theta)
    if traditional:
        x1, x2 = x[..., 0:dims:2], x[..., 1:dims:2]
        rot = np.stack([x1 * c - x2 * s, x1 * s + x2 * c], axis=-1).reshape(x.shape[:-1] + (dims,))
    else:
        x1, x2 = x[..., :half], x[..., half:dims]
        rot = np.concatenate([x1 * c - x2 * s, x1 * s + x2 * c], axis=-1)
    return np.concatenate([rot, x[..., dims:]], axis=-1)


# NOTE: angles up to ~20 rad carry float32's relative error into the outputs (MLX does the same)
case("rope", _fn("rope"), _rope_ref, F, composite(_p_rope),
     const((1, 4, 8), dims=8, traditional=False, base=10000.0, scale=1.0, offset=3), tol={"float32": 30.0})


def _p_sdpa(draw, dt):
    st, _ = _hyp()
    B, Hk, r = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    Tk, Dh = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    causal = draw(st.booleans())
    Tq = draw(st.integers(1, Tk)) if causal else draw(st.integers(1, 5))
    mask = draw(st.sampled_from(["none", "bool", "additive"]))
    shapes = ((B, Hk * r, Tq, Dh), (B, Hk, Tk, Dh), (B, Hk, Tk, draw(st.integers(1, 4))))
    if mask != "none":
        shapes += (draw(st.sampled_from([(Tq, Tk), (B, 1, Tq, Tk), (1, Hk * r, 1, Tk)])),)
    return shapes, {"causal": causal, "mask": mask, "scale": draw(st.sampled_from([None, 0.3]))}


def _sdpa_inputs(rng, dt, shapes, kw):
    q, k, v = (rand(rng, s, dt, -2, 2) for s in shapes[:3])
    if kw["mask"] == "none":
        return [q, k, v]
    if kw["mask"] == "bool":
        m = rng.random(shapes[3]) < 0.6
        m[..., 0] = True  # NOTE: key 0 is visible to every query, causal or not: no empty rows
        return [q, k, v, m]
    return [q, k, v, rand(rng, shapes[3], dt, -2, 0)]


def _sdpa_build(ox, q, k, v, *m, causal, mask, scale):
    return ox.scaled_dot_product_attention(ox.asarray(q), ox.asarray(k), ox.asarray(v), scale=scale, causal=causal,
                                           mask=ox.asarray(m[0]) if m else None)


def _sdpa_ref(q, k, v, *m, causal, mask, scale):
    H, Hk = q.shape[1], k.shape[1]
    k, v = np.repeat(k, H // Hk, axis=1), np.repeat(v, H // Hk, axis=1)
    s = q @ np.swapaxes(k, -1, -2) * (scale if scale is not None else 1 / math.sqrt(q.shape[-1]))
    Tq, Tk = s.shape[-2:]
    if causal:
        s = np.where(np.arange(Tk - Tq, Tk)[:, None] >= np.arange(Tk)[None, :], s, -np.inf)
    if m:
        s = np.where(m[0], s, -np.inf) if m[0].dtype == bool else s + m[0]
    return _softmax_ref(s, axis=-1) @ v


case("scaled_dot_product_attention", _sdpa_build, _sdpa_ref, F, composite(_p_sdpa),
     const((1, 4, 3, 8), (1, 2, 5, 8), (1, 2, 5, 8), causal=True, mask="none", scale=None), _sdpa_inputs, tol=4.0)


def _p_embedding(draw, dt):
    return ((draw(_hyp()[0].integers(1, 6)), draw(_hyp()[0].integers(1, 5))), draw(shape_st(0, 2, 1, 4))), {}


def _embedding_inputs(rng, dt, shapes, kw):
    w, ids = shapes
    return [rand(rng, w, dt), rng.integers(0, w[0], size=ids).astype(np.int32)]


case("embedding", _fn("embedding"), lambda w, ids: w[ids], NUM, composite(_p_embedding), const((5, 3), (2, 4)),
     _embedding_inputs)


def _p_linear(draw, dt):
    st, _ = _hyp()
    lead = draw(shape_st(0, 2, 1, 3))
    i, o = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    return (lead + (i,), (o, i)) + (((o,),) if draw(st.booleans()) else ()), {}


case("linear", _fn("linear"), lambda x, w, *b: x @ w.T + (b[0] if b else 0), F, composite(_p_linear),
     const((2, 3), (4, 3), (4,)), gen(), tol=_MM_TOL)


def _p_ce(draw, dt):
    st, _ = _hyp()
    s = draw(shape_st(1, 3, 1, 4))
    axis = draw(st.integers(-len(s), len(s) - 1))
    return (s, tuple(d for a, d in enumerate(s) if a != axis % len(s))), {
        "axis": axis, "reduction": draw(st.sampled_from(["mean", "sum", "none"]))}


def _ce_inputs(rng, dt, shapes, kw):
    s, t = shapes
    return [rand(rng, s, dt, -4, 4), rng.integers(0, s[kw["axis"]], size=t)]


def _ce_ref(x, t, *, axis, reduction):
    lse = _lse_ref(x, axis=axis, keepdims=False)
    picked = np.squeeze(np.take_along_axis(x, np.expand_dims(t, axis), axis=axis), axis)
    loss = lse - picked
    return loss if reduction == "none" else loss.mean() if reduction == "mean" else loss.sum()


case("cross_entropy", _fn("cross_entropy"), _ce_ref, F, composite(_p_ce), const((3, 5), (3,), axis=-1,
                                                                              reduction="mean"),
     _ce_inputs, tol=4.0)

# --- quantization ----------------------------------------------------------------------------------
# NOTE: the quant ops compute in float32 by design (MLX's algorithm), whatever the weight dtype.
_Q_TOL = {"float64": 1e7}  # float32 arithmetic: float64 results are good to float32's resolution


def _p_quant(draw, dt):
    st, _ = _hyp()
    gs, bits = draw(st.sampled_from([32, 64])), draw(st.sampled_from([4, 8]))
    lead = draw(shape_st(1, 2, 1, 3))
    return (lead + (gs * draw(st.integers(1, 2)),),), {"group_size": gs, "bits": bits}


def _qparams_ref(w, *, group_size, bits, f=np.float32):
    # NOTE: the op is defined in float32 arithmetic (MLX's): round(edge / scale) sits on exact
    # ties for half-precision weights, and float64 would break them the other way.
    g = w.astype(f).reshape(w.shape[:-1] + (w.shape[-1] // group_size, group_size))
    wmax, wmin = g.max(-1), g.min(-1)
    mask = np.abs(wmin) > np.abs(wmax)
    scales = np.maximum((wmax - wmin) / f(2 ** bits - 1), f(1e-7))
    scales = np.where(mask, scales, -scales)
    edge = np.where(mask, wmin, wmax)
    q0 = np.round(edge / scales)
    scales = np.where(q0 != 0, edge / np.where(q0 != 0, q0, f(1)), scales)
    return np.stack([scales, np.where(q0 == 0, f(0), edge)], axis=-1).astype(np.float64)


case("quant_params", lambda ox, w, *, group_size, bits: ox.build("quant_params", ox.asarray(w), group_size=group_size,
                                                                  bits=bits),
     _qparams_ref, F, composite(_p_quant), const((2, 64), group_size=32, bits=4), gen(-1, 1),
     out=lambda dt, kw: _dtypes.float32, tol=2.0, grad_ref=lambda w, **kw: _qparams_ref(w, **kw, f=np.float64))


def _pack_inputs(rng, dt, shapes, kw):
    gs, bits = kw["group_size"], kw["bits"]
    w_shape = shapes[0]
    G = w_shape[-1] // gs
    s = rand(rng, w_shape[:-1] + (G,), dt, 0.01, 0.1) * np.where(rng.random(w_shape[:-1] + (G,)) < 0.5, -1, 1)
    s = s.astype(dt.numpy)
    b = rand(rng, w_shape[:-1] + (G,), dt, -1, 1)
    q = rng.integers(0, 2 ** bits, size=w_shape[:-1] + (G, gs))
    noise = rng.uniform(-0.35, 0.35, size=q.shape)
    w = (b.astype(np.float64)[..., None] + s.astype(np.float64)[..., None] * (q + noise)).reshape(w_shape)
    return [w.astype(dt.numpy), np.stack([s, b], axis=-1).astype(np.float32)]  # NOTE: params are float32


def _pack_ref(w, sb, *, group_size, bits):
    G = w.shape[-1] // group_size
    g = w.reshape(w.shape[:-1] + (G, group_size))
    q = np.clip(np.round((g - sb[..., 1:2]) / sb[..., 0:1]), 0, 2 ** bits - 1).astype(np.uint64)
    per = 32 // bits
    q = q.reshape(w.shape[:-1] + (w.shape[-1] // per, per))
    return np.sum(q << (np.arange(per, dtype=np.uint64) * np.uint64(bits)), axis=-1).astype(np.uint32)


case("quant_pack", lambda ox, w, sb, *, group_size, bits: ox.build("quant_pack", ox.asarray(w), ox.asarray(sb),
                                                                    group_size=group_size, bits=bits),
     _pack_ref, F, composite(lambda draw, dt: (lambda p: ((p[0][0], p[0][0][:-1] + (p[0][0][-1] // p[1]["group_size"], 2)),
                                                             p[1]))(_p_quant(draw, dt))),
     const((2, 64), (2, 2, 2), group_size=32, bits=4), _pack_inputs, out=lambda dt, kw: _dtypes.uint32)


def _deq_shapes(w_shape, gs, bits):
    return (w_shape[:-1] + (w_shape[-1] * bits // 32,), w_shape[:-1] + (w_shape[-1] // gs,),
            w_shape[:-1] + (w_shape[-1] // gs,))


def _deq_inputs(rng, dt, shapes, kw):
    *lead, wq_s, s_s, b_s = shapes
    words = rng.integers(0, 2 ** 32, size=wq_s, dtype=np.uint64).astype(np.uint32)
    # NOTE: positive x and weights: no cancellation, so half-precision rounding of the
    # dequantized weights stays within the relative tolerance
    return [rand(rng, sh, dt, 0.1, 2) for sh in lead] + [words, rand(rng, s_s, dt, 0.01, 0.1), rand(rng, b_s, dt, 0, 1)]


def _unpack(wq, s, b, gs, bits, dtype=np.float32):
    per = 32 // bits
    q = (wq.astype(np.uint64)[..., None] >> (np.arange(per, dtype=np.uint64) * np.uint64(bits))) & np.uint64(2 ** bits - 1)
    # NOTE: dequantization is float32 arithmetic by definition (MLX's), whatever the scales' dtype
    q = q.reshape(wq.shape[:-1] + (-1, gs)).astype(dtype)
    w = q * s.astype(dtype)[..., None] + b.astype(dtype)[..., None]
    return w.reshape(wq.shape[:-1] + (-1,)).astype(np.float64)


case("dequantize", lambda ox, wq, s, b, *, group_size, bits: ox.dequantize(ox.asarray(wq), ox.asarray(s), ox.asarray(b),
                                                                           group_size, bits),
     lambda wq, s, b, *, group_size, bits: _unpack(wq, s, b, group_size, bits), F,
     composite(lambda draw, dt: (lambda p: (_deq_shapes(p[0][0], p[1]["group_size"], p[1]["bits"]), p[1]))(
         _p_quant(draw, dt))),
     lambda dt: (_deq_shapes((2, 64), 32, 4), {"group_size": 32, "bits": 4}), _deq_inputs, tol=_Q_TOL,
     grad_ref=lambda wq, s, b, *, group_size, bits: _unpack(wq, s, b, group_size, bits, np.float64))


def _p_qmm(draw, dt):
    st, _ = _hyp()
    (w_shape,), kw = _p_quant(draw, dt)
    n, k = draw(st.integers(1, 4)), w_shape[-1]
    transpose = draw(st.booleans())
    x_shape = draw(shape_st(0, 2, 1, 3)) + ((k,) if transpose else (n,))  # weight (n, k): x @ w.T or x @ w
    return (x_shape,) + _deq_shapes((n, k), kw["group_size"], kw["bits"]), {**kw, "transpose": transpose}


def _qmm_build(ox, x, wq, s, b, *, group_size, bits, transpose):
    return ox.quantized_matmul(ox.asarray(x), ox.asarray(wq), ox.asarray(s), ox.asarray(b), transpose=transpose,
                               group_size=group_size, bits=bits)


def _qmm_ref(x, wq, s, b, *, group_size, bits, transpose, dtype=np.float32):
    w = _unpack(wq, s, b, group_size, bits, dtype)
    return x @ (w.T if transpose else w)


case("quantized_matmul", _qmm_build, _qmm_ref, F, composite(_p_qmm),
     lambda dt: (((2, 64),) + _deq_shapes((3, 64), 32, 4), {"group_size": 32, "bits": 4, "transpose": True}),
     _deq_inputs, tol={"float64": 1e7, "float32": 8.0, "float16": 2.0, "bfloat16": 2.0},
     grad_ref=lambda *a, **kw: _qmm_ref(*a, **kw, dtype=np.float64))


# --- scatter and the transforms' ops -----------------------------------------------------------------
def _p_scatter(draw, dt):
    st, _ = _hyp()
    s = draw(shape_st(1, 3, 1, 4))
    axis = draw(st.integers(-len(s), len(s) - 1))
    i = draw(shape_st(0, 2, 1, 4))
    a = axis % len(s)
    return (s, i, s[:a] + i + s[a + 1:]), {"axis": axis}


def _scatter_inputs(rng, dt, shapes, kw):
    s, i, v = shapes
    n = s[kw["axis"] % len(s)]
    return [rand(rng, s, dt, ihi=20, ilo=-20), rng.integers(0, n, size=i), rand(rng, v, dt, ihi=20, ilo=-20)]


def _scatter_ref(x, i, v, *, axis):
    out = np.array(x, copy=True)
    np.add.at(out, (slice(None),) * (axis % x.ndim) + (i,), v)
    return out


case("scatter_add", _fn("scatter_add"), _scatter_ref, F + (_dtypes.int32, _dtypes.int64), composite(_p_scatter),
     const((3, 4), (5,), (3, 5), axis=1), _scatter_inputs)
case("stop_gradient", _fn("stop_gradient"), lambda x: x, F, UNARY_ONE, EX1)


@functools.lru_cache(maxsize=None)
def _custom_square(kind: str) -> Any:
    """``x * x`` with a hand-written rule (custom_vjp or custom_jvp): the rule is what the
    gradient checks then certify."""
    import oxcore as ox

    if kind == "vjp":
        f = ox.custom_vjp(lambda x: x * x)
        f.defvjp(lambda x: (x * x, x), lambda x, g: (2 * x * g,))
    else:
        f = ox.custom_jvp(lambda x: x * x)
        f.defjvp(lambda p, t: (p[0] * p[0], 2 * p[0] * t[0]))
    return f


for _kind in ("vjp", "jvp"):
    case(f"custom_{_kind}_call", lambda ox, x, _k=_kind: _custom_square(_k)(ox.asarray(x)), lambda x: x * x, F,
         UNARY_ONE, EX1)

from . import cases_api  # noqa: E402,F401  (the Array API extras' cases join CASES)
