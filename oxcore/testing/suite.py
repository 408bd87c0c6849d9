"""The conformance suite: test functions that run against the backend named by the
``oxcore_backend`` fixture (and the format named by ``oxcore_format``).

``pytest --oxcore-backend NAME`` collects this module; a project reuses it by importing the
tests into one of its own modules (``from oxcore.testing.suite import *``), where the
``oxcore`` pytest plugin parametrizes ``oxcore_backend`` over every installed, available
backend (or the ``--oxcore-backend`` ones) and ``oxcore_case`` over every (case, dtype).

Ops run pinned with ``oxcore.use(backend)``; ``oxcore.explain`` must show every node on that
backend. A node that went elsewhere because the backend's kernel refused it (``supports``
said no, with a reason) or because the backend has no kernel at all (the op is not claimed)
is reported as a skip with that reason, never as a pass.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np
import pytest

import oxcore as ox
from oxcore._plan import PlanNode
from oxcore.extend import HOST, manager

from .cases import Case, PluginCaseError, all_cases
from .check import assert_close, run_in_threads
from .grads import check_gradients, check_vmap

__all__ = ["test_op", "test_grad", "test_vmap", "test_transfers", "test_dlpack", "test_supports_reasons", "test_threads",
           "test_buffers_freed", "test_format_roundtrip", "test_format_hostile"]


# --- helpers ---------------------------------------------------------------------------------------
def placement_problem(out: Any, backend: str, ex: Any = None) -> str | None:
    """None when every node of ``out``'s plan runs on ``backend``, else why not (for a skip).
    ``ex``: ``oxcore.explain(out)`` when the caller has it already."""
    ex = ex if ex is not None else ox.explain(out)
    for p in ex.nodes:
        if p.backend.name == backend:
            continue
        mine = [why for k, why in p.candidates if isinstance(why, str) and (k == backend or k.startswith(backend + "."))]
        ins = ", ".join(f"{i.dtype.name}{list(i.shape)}" for i in p.inputs) or "no inputs"
        if not mine:
            return f"{backend} was not offered {p.op}({ins}) (not available?); it ran on {p.backend.name}"
        if all(w == "no kernel" for w in mine):
            return f"not claimed: {backend} has no kernel for {p.op} (and no decomposition reaches it)"
        reason = next(w for w in mine if w != "no kernel")
        return f"refused: {backend} declined {p.op}({ins}) -> {p.dtype.name}{list(p.shape)}: {reason}"
    if ex.fallbacks:
        return "fallback: " + "; ".join(ex.fallbacks)
    return None


def run_case(case: Case, dt: ox.DType, params: Any, seed: int, backend: str) -> None:
    """Build ``case`` on ``backend`` with fresh inputs, check placement, compare with float64."""
    inputs, kw = case.make(dt, params, seed)
    shapes = [a.shape for a in inputs]
    what = f"{case.id} on {backend} ({dt.name}, input shapes {shapes}, attrs {kw}, seed {seed})"
    with ox.use(backend):
        out = case.build(ox, *inputs, **kw)
    node_op = out._node.op
    assert node_op == case.op, f"{what}: the case built a {node_op!r} node, not {case.op!r} (a bug in the case)"
    ex = ox.explain(out)
    problem = placement_problem(out, backend, ex)
    if problem is not None:
        pytest.skip(f"{case.id} {dt.name}: {problem}")
    # NOTE: a decomposition that does nothing (stop_gradient, roll by 0) plans no node: the
    # result is the input, wherever it lives, and no backend ran anything to place
    computes = bool(ex.nodes)
    expected = case.reference(inputs, kw)
    case.check(out, expected, dt, kw, what)
    dev = manager().backend(backend).device
    assert out.device == dev or not computes, \
        f"{what}: result lives on {out.device}, expected the backend's device {dev}"


def check_case(case: Case, dt: ox.DType, backend: str) -> None:
    """``run_case`` on the fixed example, then on hypothesis-drawn shapes, attributes and seeds."""
    from hypothesis import given, strategies as st

    # NOTE: decide refusals once on the fixed example, so a refused combination skips without
    # hypothesis shrinking through it; shape-dependent refusals still skip inside.
    run_case(case, dt, case.example(dt), 0, backend)

    @given(params=case.params(dt), seed=st.integers(0, 2**32 - 1))
    def check(params: Any, seed: int) -> None:
        run_case(case, dt, params, seed, backend)

    check()


# --- per-op ---------------------------------------------------------------------------------------------
def test_op(oxcore_backend: str, oxcore_case: tuple[Case, ox.DType]) -> None:
    """Every (case, dtype), the plugins' included: pinned to the backend, placed there, equal to
    the float64 reference (elementwise, or by NMSE where the case says so)."""
    if isinstance(oxcore_case[0], PluginCaseError):
        pytest.fail(f"{oxcore_case[0].plugin}: {oxcore_case[0].reason}", pytrace=False)
    check_case(*oxcore_case, oxcore_backend)


def test_grad(oxcore_backend: str, oxcore_grad_case: tuple[Case, ox.DType]) -> None:
    """Every differentiable (case, dtype): VJP and JVP on the backend against float64 central
    differences of the reference, and against each other."""
    case, dt = oxcore_grad_case
    _require_placement(case, dt, oxcore_backend)
    why = check_gradients(case, dt, oxcore_backend)
    if why is not None:
        pytest.skip(f"{case.id} {dt.name}: {why}")


def test_vmap(oxcore_backend: str, oxcore_vmap_case: tuple[Case, ox.DType]) -> None:
    """Every case: ``oxcore.vmap`` over stacked inputs equals a Python loop over the examples."""
    case, dt = oxcore_vmap_case
    _require_placement(case, dt, oxcore_backend)
    check_vmap(case, dt, oxcore_backend)


def _require_placement(case: Case, dt: ox.DType, backend: str) -> None:
    """Skip (with the reason) where the backend does not run the op itself: the forward checks
    already report that, and a gradient check would then test another backend."""
    inputs, kw = case.make(dt, case.example(dt), 0)
    with ox.use(backend):
        problem = placement_problem(case.build(ox, *inputs, **kw), backend)
    if problem is not None:
        pytest.skip(f"{case.id} {dt.name}: {problem}")


# --- protocol ----------------------------------------------------------------------------------------
def _device(backend: str) -> Any:
    return manager().backend(backend).device


def test_transfers(oxcore_backend: str) -> None:
    """Host -> device -> host keeps values, dtype and shape; a plan moves host inputs in and results out."""
    rng = np.random.default_rng()
    dev = _device(oxcore_backend)
    for dt in (ox.float32, ox.int32, ox.bool, ox.float16):
        a = np.asarray(rng.uniform(-3, 3, (3, 5)) if dt.is_floating else rng.integers(-9, 9, (3, 5))).astype(dt.numpy)
        if dt is ox.bool:
            a = rng.random((3, 5)) < 0.5
        x = ox.asarray(a).to_device(dev)
        assert x.device == dev and not x.is_lazy
        assert_close(x, a, dt, what=f"host->{dev} transfer")
        back = x.to_device("cpu")
        assert back.device == HOST
        assert_close(back, a, dt, what=f"{dev}->host transfer")
    a = rng.uniform(-3, 3, (4, 4)).astype(np.float32)
    with ox.use(oxcore_backend):
        y = ox.asarray(a) * 2 + 1  # host leaf in, result out on the device
    assert placement_problem(y, oxcore_backend) is None
    assert_close(y, a.astype(np.float64) * 2 + 1, ox.float32, what="computed across a transfer")
    assert y.device == dev


def test_dlpack(oxcore_backend: str) -> None:
    """DLPack both ways: NumPy -> oxcore without a copy, oxcore (computed on the backend) -> NumPy."""
    rng = np.random.default_rng()
    a = rng.uniform(-3, 3, (3, 4)).astype(np.float32)
    x = ox.from_dlpack(a)
    assert np.shares_memory(x.numpy(), a), "from_dlpack(np.ndarray) copied the data"
    with ox.use(oxcore_backend):
        y = x * 3 - 1
    assert placement_problem(y, oxcore_backend) is None
    assert_close(np.from_dlpack(y), a.astype(np.float64) * 3 - 1, ox.float32, what="oxcore -> NumPy via DLPack")
    assert y.__dlpack_device__()[0] == 1  # kDLCPU
    z = ox.from_dlpack(y)  # oxcore is a DLPack producer for itself too
    assert_close(z, a.astype(np.float64) * 3 - 1, ox.float32, what="oxcore -> oxcore via DLPack")


def test_supports_reasons(oxcore_backend: str) -> None:
    """Every kernel's ``supports`` answers True or a non-empty reason string, never raises,
    for every case's example node (the plugins' cases included) in every dtype."""
    b = manager().backend(oxcore_backend)
    bad = []
    for case in all_cases():
        ks = b.kernels_for(case.op)
        if not ks:
            continue
        for dt in case.dtypes:
            inputs, kw = case.make(dt, case.example(dt), 0)
            n = case.build(ox, *inputs, **kw)._node
            p = PlanNode(n.op, n.attrs, (), list(n.inputs), n.shape, n.dtype)
            for k in ks:
                if k.supports is None:
                    continue
                try:
                    r = k.supports(p)
                except Exception as e:
                    bad.append(f"{k.id} {dt.name}: supports() raised {type(e).__name__}: {e}")
                    continue
                if r is not True and not (isinstance(r, str) and r.strip()):
                    bad.append(f"{k.id} {dt.name}: supports() returned {r!r}; expected True or a reason string")
    assert not bad, "\n".join(bad)


def test_threads(oxcore_backend: str) -> None:
    """Evaluations from 4 threads at once: each gets its own right answer, and one shared lazy
    array evaluated by all of them is computed once and consistently."""
    rng = np.random.default_rng()
    inputs = [rng.uniform(-2, 2, (16, 16)).astype(np.float32) for _ in range(4)]
    shared_in = rng.uniform(-2, 2, (8, 8)).astype(np.float32)
    with ox.use(oxcore_backend):
        shared = ox.tanh(ox.asarray(shared_in) @ ox.asarray(shared_in)) + 1
    results: dict[int, Any] = {}

    def work(i: int) -> None:
        for step in range(10):
            a = inputs[i]
            with ox.use(oxcore_backend):
                y = ox.sum(ox.exp(ox.asarray(a) * 0.5) + step, axis=1)
            assert_close(y, np.sum(np.exp(a.astype(np.float64) * 0.5) + step, axis=1), ox.float32,
                         what=f"thread {i} step {step}", tol=4)
        results[i] = np.array(shared.numpy())

    run_in_threads(work, 4)
    ref = np.tanh(shared_in.astype(np.float64) @ shared_in.astype(np.float64)) + 1
    for i in range(4):
        assert_close(results[i], ref, ox.float32, what=f"shared array seen by thread {i}", tol=4)


def test_buffers_freed(oxcore_backend: str) -> None:
    """After eval, intermediates are gone and a dropped result frees its buffer."""
    rng = np.random.default_rng()
    a = rng.uniform(-2, 2, (64, 64)).astype(np.float32)
    with ox.use(oxcore_backend):
        x = ox.asarray(a)
        t1 = ox.exp(x * 0.5)
        t2 = t1 + 1
        y = ox.sum(t2 * t2, axis=0)
    inter = [weakref.ref(t1._node), weakref.ref(t2._node)]
    del t1, t2
    y.eval()
    gc.collect()
    assert all(r() is None for r in inter), "intermediate nodes are still alive after eval"
    assert y._node.inputs == (), "the evaluated node still references its inputs"
    assert_close(y, np.sum((np.exp(a.astype(np.float64) * 0.5) + 1) ** 2, axis=0), ox.float32, tol=4)
    node = weakref.ref(y._node)
    try:
        buf = weakref.ref(y._node.buf)
    except TypeError:  # NOTE: some device arrays refuse weak references; the node check still holds
        buf = None
    del y
    gc.collect()
    assert node() is None, "the result node outlived its last handle"
    if buf is not None:
        assert buf() is None, "the result buffer outlived its last handle"


# --- formats (--oxcore-format) ---------------------------------------------------------------------
def _format_kit() -> Any:
    try:
        from . import formats  # written by the formats engineer: hostile-file generators
    except ImportError as e:
        pytest.skip(f"oxcore.testing.formats is not available ({e}); format checks need its generators")
    return formats


def test_format_roundtrip(oxcore_format: str, tmp_path: Any) -> None:
    """What the format declares (``Format.capabilities``) holds: every dtype it stores comes
    back bit for bit, the others and (for a single-tensor format) a second tensor are refused
    with TypeError/ValueError, leaving no file."""
    kit = _format_kit()
    caps = manager().formats[oxcore_format].capabilities
    if not caps.can_write:
        pytest.skip(f"{oxcore_format} is read-only (capabilities.can_write=False): nothing to round-trip")
    assert kit.roundtrip(oxcore_format, tmp_path)


def test_format_hostile(oxcore_format: str, tmp_path: Any) -> None:
    """Every file of the hostile corpus raises FormatError naming the file, the offset and the
    problem; the tricky-but-valid files load. Nothing crashes, hangs or reads outside a file."""
    kit = _format_kit()
    cases = kit.corpus(oxcore_format) + kit.valid_cases(oxcore_format)
    assert cases, f"the {oxcore_format} corpus is empty"
    failures = []
    for c in cases:
        try:
            kit.check_case(c, tmp_path)
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, f"{len(failures)} of {len(cases)} corpus files misbehaved:\n" + "\n".join(failures)
