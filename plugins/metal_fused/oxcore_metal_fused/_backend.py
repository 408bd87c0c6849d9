"""metal_fused: the MLX backend that compiles each segment once with ``mx.compile``."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Callable

from oxcore.extend import REGISTRY, Category, Segment
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
        self.stats = {"compiled": 0, "reused": 0, "shapeless": 0}

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
        MLX constants (literals in fused kernels) and dropped from the compiled call."""
        import mlx.core as mx

        run = segment.interpreter()
        if not segment.constants:
            return mx.compile(lambda *xs: run(list(xs)), shapeless=shapeless)
        # NOTE: own copies: the device shares 0-d arrays by value, and MLX refuses to compile a
        # function whose captured constant is also one of its inputs (an argument equal to it)
        consts = {k: self.device.from_numpy(v, shared=False) for k, v in segment.constants.items()}
        mx.eval(list(consts.values()))
        live = [k for k in range(segment.n_inputs) if k not in consts]
        n = segment.n_inputs

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
        one ``mx.eval``."""
        state = {"runs": 0, "fn": None}
        first = self.compile_after
        interp = segment.interpreter()

        def call(inputs: list) -> list:
            fn = state["fn"]
            if fn is None:
                state["runs"] += 1
                if state["runs"] < first:
                    return interp(inputs)
                fn = state["fn"] = self._compiled_fn(segment)
            return fn(*inputs)
        return self.evaluated(call)
