"""metal_fused: the MLX backend that compiles each segment once with ``mx.compile``."""

from __future__ import annotations

import dataclasses
import os
import weakref
from collections import OrderedDict
from typing import Any, Callable

from oxcore.extend import REGISTRY, Category, Instruction, Segment
from oxcore_metal_basic import MLXBackend

_ELEMENTWISE = (Category.UNARY, Category.BINARY, Category.TERNARY)
_ELEMENTWISE_NN = frozenset({"relu", "sigmoid", "silu", "gelu"})  # activations are elementwise too
# NOTE: their kernels bit-cast (mx.view), whose output shape MLX cannot infer shapelessly
_NOT_SHAPELESS = frozenset({"signbit", "copysign"})


def shapeless_key(segment: Segment) -> tuple | None:
    """A cache key without sizes for segments that ``mx.compile(shapeless=True)`` may reuse
    across shapes, or None when the segment's graph depends on its shapes.

    Only all-elementwise segments qualify (no op with a shape, axis or index attribute). The
    key keeps dtypes, ranks and which dimensions are 1, so broadcasting patterns never change
    under a compiled function; only the sizes of the other dimensions may.
    """
    for ins in segment.instructions:
        elementwise = REGISTRY.ops[ins.op].category in _ELEMENTWISE or ins.op in _ELEMENTWISE_NN
        if not elementwise or ins.op in _NOT_SHAPELESS:
            return None
    pattern = tuple((dt.name, tuple(d == 1 for d in shape)) for shape, dt in segment.input_avals)
    body = segment.key[1:]
    return ("shapeless", pattern) + body


#: (instruction index, segment input index it prepares, the kernel fn carrying ``prepare``)
Preparation = tuple[int, int, Callable]


def preparations(backend: Any, segment: Segment) -> list[Preparation]:
    """The instructions whose kernel prepares one of its inputs once per buffer (the kernel fn
    has ``prepare_arg``, ``prepare`` and ``prepared``; see ``FusedBackend``), where that input is
    an input of the segment (a buffer that outlives the call, such as a weight) and not a constant."""
    out: list[Preparation] = []
    for j, ins in enumerate(segment.instructions):
        fn = _registered_fn(backend, ins)
        arg = getattr(fn, "prepare_arg", None)
        if arg is None:
            continue
        a = ins.args[arg]
        if a < segment.n_inputs and a not in segment.constants:
            out.append((j, a, fn))
    return out


def _registered_fn(backend: Any, ins: Instruction) -> Callable:
    # NOTE: the plan wraps other distributions' kernels (so their failures are attributed to them);
    # the prepare attributes live on the fn as registered
    for k in backend.kernels_for(ins.op):
        if k.name == ins.kernel.name:
            return k.fn
    return ins.kernel.fn


def rewired(segment: Segment, preps: list[Preparation], counts: list[int]) -> Segment:
    """``segment`` with each prepared input's ``counts[i]`` prepared arrays appended as extra
    inputs, and each preparing instruction calling its kernel's ``prepared`` on them."""
    n, extra = segment.n_inputs, sum(counts)

    def shift(a: int) -> int:
        return a if a < n else a + extra
    ins = [dataclasses.replace(i, args=tuple(shift(a) for a in i.args)) for i in segment.instructions]
    avals = list(segment.input_avals)
    at = n
    for (j, a, fn), c in zip(preps, counts):
        args = list(ins[j].args)
        args[fn.prepare_arg:fn.prepare_arg + 1] = range(at, at + c)
        kernel = dataclasses.replace(ins[j].kernel, fn=fn.prepared)
        ins[j] = dataclasses.replace(ins[j], args=tuple(args), kernel=kernel)
        avals += [segment.input_avals[a]] * c  # NOTE: only the interpreter reads this segment, never its avals
        at += c
    return Segment(segment.backend, n + extra, avals, ins, tuple(shift(o) for o in segment.outputs),
                   dict(segment.constants))


class FusedBackend(MLXBackend):
    """Like metal_basic, but each segment becomes one ``mx.compile``d function (elementwise
    chains fuse into single kernels) and norms, RoPE and attention go to ``mx.fast``.

    Segment inputs, Python scalars included (they arrive as 0-d arrays), are arguments of the
    compiled function, so one compilation serves every call. The exception is a segment planned
    by ``oxcore.compile``: its ``segment.constants`` (values fixed for the trace's life) are
    baked in, which lets MLX fuse them as literals.
    oxcore keeps one step function per segment structure (``segment.key``), so each structure
    compiles once; all-elementwise segments also share one ``mx.compile(shapeless=True)``
    result across sizes, kept in a bounded LRU keyed by ``shapeless_key``.

    Weights a kernel converts (ggml blocks to MLX's affine form, in ``oxcore-kernels-ggml``)
    would be placeholders inside ``mx.compile``, so the conversion would run on every call. A
    kernel fn avoids that by carrying three attributes: ``prepare_arg`` (which argument),
    ``prepare(buf, instruction) -> tuple of arrays`` (evaluated, cached per buffer by the
    kernel) and ``prepared(*args, **attrs)`` (the kernel with that argument replaced by the
    tuple's arrays). Where the argument is a segment input, each call prepares it outside the
    compiled function (a cache hit after the first) and passes the arrays in.

    A segment is compiled the ``compile_after``-th time it runs (default 2, env
    ``OXCORE_MLX_COMPILE_AFTER``); earlier runs go op by op like metal_basic. NOTE: compiling
    costs milliseconds on a GPU and ~2 s on MLX's CPU (it JIT-builds C++), which only pays off
    for segments that repeat, as in a training or decode loop; one-off graphs never pay it.

    Attributes:
        cache_size: how many shapeless compiled segments to keep.
        compile_after: the run of a segment at which it is compiled (1: at once).
    """

    name = "metal_fused"
    fuses = True
    gpu_priority, cpu_priority = 20, -10
    launch_scale = 0.5
    cache_size = 512

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.compile_after = max(1, int(os.environ.get("OXCORE_MLX_COMPILE_AFTER", "2")))
        self.compiled: "OrderedDict[tuple, Callable]" = OrderedDict()
        self.stats = {"compiled": 0, "reused": 0, "shapeless": 0, "prepared": 0}

    @property
    def warmup_runs(self) -> int:  # type: ignore[override]
        """Runs before a segment is at its steady speed: it compiles on run ``compile_after``."""
        return self.compile_after

    def _compiled_fn(self, segment: Segment) -> Callable:
        skey = shapeless_key(segment)
        if skey is None:
            # NOTE: oxcore already keeps one step function per segment.key (oxcore._plan.compiled),
            # so this compiles once per structure; only shapeless reuse needs a cache of its own
            self.stats["compiled"] += 1
            return self._compile(segment, shapeless=False)
        key = skey
        fn = self.compiled.get(key)
        if fn is not None:
            self.compiled.move_to_end(key)
            self.stats["reused"] += 1
            return fn
        fn = self._compile(segment, shapeless=True)
        self.compiled[key] = fn
        self.stats["compiled"] += 1
        self.stats["shapeless"] += 1
        while len(self.compiled) > self.cache_size:
            self.compiled.popitem(last=False)
        return fn

    def _compile(self, segment: Segment, shapeless: bool) -> Callable:
        """``mx.compile`` the segment's interpreter; its constant inputs are baked in as captured
        MLX constants (literals in fused kernels) and dropped from the compiled call, and so are
        inputs no instruction reads (raw weights whose prepared arrays replaced them)."""
        import mlx.core as mx

        run = segment.interpreter()
        n = segment.n_inputs
        read = {a for ins in segment.instructions for a in ins.args}
        if not segment.constants and len(read.intersection(range(n))) == n:
            return mx.compile(lambda *xs: run(list(xs)), shapeless=shapeless)
        # NOTE: own copies: the device shares 0-d arrays by value, and MLX refuses to compile a
        # function whose captured constant is also one of its inputs (an argument equal to it)
        consts = {k: self.device.from_numpy(v, shared=False) for k, v in segment.constants.items()}
        mx.eval(list(consts.values()))
        # NOTE: every input is an argument MLX checks and binds on each call
        live = [k for k in range(n) if k not in consts and k in read]

        def body(*xs: Any) -> list:
            ins: list[Any] = [None] * n
            for k, x in zip(live, xs):
                ins[k] = x
            for k, c in consts.items():
                ins[k] = c
            return run(ins)
        compiled = mx.compile(body, shapeless=shapeless)
        return lambda *inputs: compiled(*[inputs[k] for k in live])

    def compile_segment(self, segment: Segment) -> Callable[[list], list]:
        """``mx.compile`` the whole segment (cached) once it repeats; evaluate its outputs in
        one ``mx.eval``. Inputs a kernel prepares (converted weights) are prepared before each
        call, outside the compiled function."""
        state: dict[str, Any] = {"runs": 0, "fn": None}
        first = self.compile_after
        interp = segment.interpreter()
        preps = preparations(self, segment)
        if not preps:
            def call(inputs: list) -> list:
                fn = state["fn"]
                if fn is None:
                    state["runs"] += 1
                    if state["runs"] < first:
                        return interp(inputs)
                    fn = state["fn"] = self._compiled_fn(segment)
                return fn(*inputs)
            return self.evaluated(call)
        prep = [(a, fn.prepare, segment.instructions[j]) for j, a, fn in preps]
        # NOTE: weak: this function outlives the plan (compiled segments are cached by structure),
        # and must not keep a dropped model's weights alive
        last: dict[str, list] = {"raw": [], "extra": []}

        def call_prepared(inputs: list) -> list:
            fn = state["fn"]
            if fn is None:
                state["runs"] += 1
                if state["runs"] < first:
                    return interp(inputs)
            raw = [inputs[a] for a, _, _ in prep]
            # NOTE: a decode loop passes the same weight buffers every call: skip the 100+ cache lookups
            extra = [w() for w in last["extra"]] if all(map(_is_referent, last["raw"], raw)) and last["raw"] else None
            if extra is None or any(w is None for w in extra):
                done = [p(r, ins) for r, (_, p, ins) in zip(raw, prep)]
                if fn is None:
                    self.stats["compiled"] += 1
                    self.stats["prepared"] += len(prep)
                    fn = state["fn"] = self._compile(rewired(segment, preps, [len(e) for e in done]),
                                                     shapeless=False)
                extra = [w for e in done for w in e]
                last["raw"], last["extra"] = [weakref.ref(r) for r in raw], [weakref.ref(w) for w in extra]
            return fn(*inputs, *extra)
        return self.evaluated(call_prepared)


def _is_referent(ref: Any, x: Any) -> bool:
    return ref() is x
