"""What a plugin implements: ``Backend`` (a device + kernels) and ``Kernel`` (one op, one backend)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ._device import HOST, Device
from ._dtypes import DType

# supports(node) answers True, or a string saying why not (False means "no" without a reason).
Supports = Callable[[Any], "bool | str"]


@dataclass(eq=False)
class Kernel:
    """One implementation of one op on one backend.

    Attributes:
        op: the op name.
        backend: the backend name it runs on.
        fn: ``fn(*input_buffers, **attrs) -> buffer``; buffers are the device's native arrays.
        supports: ``supports(node) -> True | "reason"``; ``node`` has ``.op``, ``.attrs``,
            ``.shape``, ``.dtype`` and ``.inputs`` (each with ``.shape``, ``.dtype``).
        name: kernel name, unique per backend and op (``"default"`` for a backend's own).
        source: distribution that registered it (filled in by the plugin loader).
        version: version of that distribution, part of profile keys.
        prior_us: optional ``prior_us(node) -> float``, the cost guess before autotuning.
        inplace: optional ``inplace(*input_buffers, **attrs) -> buffer``: ``fn``'s result, allowed
            to be written into its first input's buffer and returned. A plan calls it instead of
            ``fn`` where that input is an argument donated to ``oxcore.compile`` (``donate=``) and
            nothing else reads it: a decode step's KV cache takes its new row without a copy of
            the whole cache. It must still give the result (by copying) when the buffer is
            read-only.
    """

    op: str
    backend: str
    fn: Callable[..., Any]
    supports: Supports | None = None
    name: str = "default"
    source: str = ""
    version: str = ""
    prior_us: Callable[[Any], float] | None = None
    inplace: Callable[..., Any] | None = None
    failed: str | None = field(default=None, compare=False)  # set when it raised at run time

    @property
    def id(self) -> str:
        return f"{self.backend}.{self.op}.{self.name}"

    def check(self, node: Any) -> str | None:
        """None when the kernel accepts ``node``, else the reason it does not."""
        if self.supports is None:
            return None
        try:
            r = self.supports(node)
        except Exception as e:  # NOTE: a buggy supports() must not break planning
            return f"supports() raised {type(e).__name__}: {e}"
        if r is True:
            return None
        return r if isinstance(r, str) and r else "refused (no reason given)"


#: ops whose prior adds a compute term: ``2 * output elements * contracted dim`` flops
MATMUL_LIKE = ("matmul", "linear", "quantized_matmul", "scaled_dot_product_attention")


class Backend:
    """A device backend. Subclass, set ``name``/``device``, add kernels, register it.

    Example:
        >>> import numpy as np
        >>> from oxcore.extend import Backend
        >>> class Tiny(Backend):
        ...     name = "tiny"
        >>> b = Tiny()
        >>> @b.kernel("add")
        ... def add(x, y):
        ...     return np.add(x, y)
        >>> sorted(b.kernels)
        ['add']

    Attributes:
        name: unique backend name (``oxcore backends list`` shows it).
        device: the ``Device`` its buffers live on (host ``cpu`` unless overridden).
        priority: static preference before autotuning; higher wins ties (cpu_numpy is 0).
        launch_us, bytes_per_us: the static cost prior: ``launch_us + bytes / bytes_per_us``.
        flops_per_us: the compute rate of matmul-like ops for the prior (None: ``8 * bytes_per_us``,
            so a backend that declares more bandwidth also claims faster matmuls; set it to what
            the device computes when the two differ).
        thread_pools: for CPU backends, the thread pools the kernels run on, as threadpoolctl names
            them (a user_api ``"blas"``/``"openmp"``, an internal_api ``"openblas"``/``"mkl"``,
            or a library file prefix ``"libgomp"``). A plan that runs segments of two or more
            CPU backends with pools shares the cores among them (``limit_threads``).
        fuses: True when ``compile_segment`` really fuses (shown in listings).
        warmup_runs: how many runs a new segment takes before it runs at its steady speed
            (1: compiled by ``compile_segment`` or at its first run; metal_fused compiles a
            segment on its second run, so 2). Timing (``oxcore autotune``, benchmarks) runs
            each candidate that many times untimed.
    """

    name: str = "unnamed"
    device: Device = HOST
    priority: int = 0
    launch_us: float = 2.0
    bytes_per_us: float = 8e3  # ~8 GB/s: a single CPU core streaming
    flops_per_us: float | None = None
    thread_pools: tuple[str, ...] = ()
    fuses: bool = False
    warmup_runs: int = 1
    distribution: str = ""
    version: str = ""

    def __init__(self) -> None:
        self.kernels: dict[str, list[Kernel]] = {}

    # --- kernels ----------------------------------------------------------------------
    def kernel(self, op: str, *, supports: Supports | None = None, name: str = "default",
               prior_us: Callable[[Any], float] | None = None,
               inplace: Callable[..., Any] | None = None) -> Callable[[Callable], Callable]:
        """Decorator: register ``fn`` as this backend's kernel for ``op`` (``inplace``: its
        variant that may write into its first input, see ``Kernel``)."""
        def deco(fn: Callable) -> Callable:
            self.add_kernel(Kernel(op, self.name, fn, supports, name, prior_us=prior_us, inplace=inplace))
            return fn
        return deco

    def add_kernel(self, k: Kernel) -> None:
        ks = self.kernels.setdefault(k.op, [])
        ks[:] = [x for x in ks if x.name != k.name] + [k]

    def kernels_for(self, op: str) -> list[Kernel]:
        return self.kernels.get(op, ())  # type: ignore[return-value]

    # --- availability and devices ----------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        """``(True, "")`` or ``(False, reason)``. Called once per process; keep it cheap."""
        return True, ""

    @property
    def devices(self) -> list[Device]:
        return [self.device]

    # --- threads -----------------------------------------------------------------------------
    def limit_threads(self, n: int | None) -> None:
        """Run this backend's kernels on at most ``n`` threads from now on; ``None`` restores its
        own setting. The runtime calls it when a plan mixes CPU backends (once per change, not
        per op). The default limits the libraries ``thread_pools`` names through threadpoolctl;
        override it for a pool threadpoolctl cannot see (``numba.set_num_threads``).
        """
        from ._threads import limit_pools

        limit_pools(self.thread_pools, n)

    def configured_threads(self) -> int | None:
        """How many threads this backend's pools are set to use (its own setting, not a limit
        the runtime applied), or None when it has no pool loaded. Part of every profile key:
        timings measured under another thread setting do not apply. Override it together with
        ``limit_threads``."""
        from ._threads import pool_threads

        return pool_threads(self.thread_pools) if self.thread_pools else None

    @property
    def has_thread_pools(self) -> bool:
        """A CPU backend whose kernels start worker threads (it names pools or limits its own)."""
        return self.device.kind == "cpu" and (bool(self.thread_pools) or
                                             type(self).limit_threads is not Backend.limit_threads)

    # --- costs -----------------------------------------------------------------------
    def prior_us(self, node: Any) -> float:
        """Static cost guess in microseconds for a node before any profile exists."""
        nbytes = node.dtype.itemsize * math.prod(node.shape)
        for i in node.inputs:
            nbytes += i.dtype.itemsize * math.prod(i.shape)
        us = self.launch_us + nbytes / self.bytes_per_us
        if node.op in MATMUL_LIKE:
            a = node.inputs[0].shape
            flops = 2 * math.prod(node.shape) * (a[-1] if a else 1)
            us += flops / (self.flops_per_us or 8 * self.bytes_per_us)  # NOTE: ~8 flops per byte-time
        return us

    # --- execution ---------------------------------------------------------------------
    def compile_segment(self, segment: "Segment") -> Callable[[list], list]:
        """Return ``run(inputs) -> outputs`` for a segment. The default runs kernels one by one.

        Fusing backends override this (compile the whole segment once; it is cached by
        ``segment.key``).
        """
        return segment.interpreter()

    def synchronize(self) -> None:
        """Block until queued work is done (timing helpers call it). Default: nothing queued."""

    def __repr__(self) -> str:
        return f"<Backend {self.name} on {self.device}>"


@dataclass
class Instruction:
    """One node inside a segment: ``env[out] = kernel.fn(*env[args], **attrs)``."""

    op: str
    attrs: dict[str, Any]
    kernel: Kernel
    args: tuple[int, ...]
    shape: tuple[int, ...]
    dtype: DType


@dataclass
class Segment:
    """A run of nodes placed on one backend.

    ``env`` indices ``0..n_inputs-1`` are the inputs, then one per instruction in order.
    ``outputs`` lists the env indices the rest of the plan needs. ``key`` identifies the
    segment's structure (ops, attrs, input shapes/dtypes, constants), for compile caches.

    ``constants`` maps input indices to their values (host NumPy arrays, 0-d) where those
    values can never change for this segment. Only segments planned by ``oxcore.compile`` have
    any (constants of decompositions, the traced function's Python scalars and captured 0-d
    values); lazy plans leave it empty. They are still passed in at run time; a
    compiling backend may bake them into its code instead (literals fuse into kernels; on
    MLX's CUDA backend a 0-d input costs ~15 us a call).
    """

    backend: Backend
    n_inputs: int
    input_avals: list[tuple[tuple[int, ...], DType]]
    instructions: list[Instruction] = field(default_factory=list)
    outputs: tuple[int, ...] = ()
    constants: dict[int, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        consts = tuple((k, v.dtype.str, v.tobytes()) for k, v in sorted(self.constants.items()))
        return (tuple(self.input_avals),
                tuple((i.op, _freeze(i.attrs), i.kernel.id, i.args) for i in self.instructions), self.outputs, consts)

    def interpreter(self) -> Callable[[list], list]:
        """A straight-line Python function calling each kernel; frees values after last use."""
        n = self.n_inputs
        dead = frees_after_last_use([ins.args for ins in self.instructions], set(self.outputs))
        if len(self.instructions) > _STRAIGHT_LINE_MAX:  # NOTE: compiling a huge function is superlinear
            return self._loop(dead)
        lines = ["def run(inputs):"]
        lines.append("    " + (", ".join(f"v{i}" for i in range(n)) + (",", "")[n != 1] + " = inputs" if n else "pass"))
        ns: dict[str, Any] = {}
        for j, ins in enumerate(self.instructions):
            ns[f"k{j}"] = ins.kernel.fn
            args = ", ".join(f"v{a}" for a in ins.args)
            if ins.attrs:
                ns[f"a{j}"] = ins.attrs
                args += (", " if args else "") + f"**a{j}"
            lines.append(f"    v{n + j} = k{j}({args})")
            if dead[j]:
                lines.append("    del " + ", ".join(f"v{a}" for a in dead[j]))
        lines.append("    return [" + ", ".join(f"v{o}" for o in self.outputs) + "]")
        exec(compile("\n".join(lines), f"<oxcore segment on {self.backend.name}>", "exec"), ns)
        return ns["run"]

    def _loop(self, dead: list[tuple[int, ...]]) -> Callable[[list], list]:
        """The interpreter as a loop over the instructions (for segments too big to compile)."""
        n, outs = self.n_inputs, self.outputs
        prog = [(ins.kernel.fn, ins.args, ins.attrs, d) for ins, d in zip(self.instructions, dead)]

        def run(inputs: list) -> list:
            env = list(inputs) + [None] * len(prog)
            for j, (fn, args, attrs, free) in enumerate(prog, n):
                env[j] = fn(*[env[a] for a in args], **attrs)
                for d in free:
                    env[d] = None
            return [env[o] for o in outs]
        return run


def frees_after_last_use(reads: list[tuple[int, ...]], held: set[int]) -> list[tuple[int, ...]]:
    """For each reader in order (its tuple of value indices), the values it reads for the last
    time, sorted, leaving out ``held`` (values that must outlive the run): free them right after it runs.

    Example:
        >>> frees_after_last_use([(0, 1), (0, 2), (3,)], held={2})
        [(1,), (0,), (3,)]
    """
    last: dict[int, int] = {}
    for j, args in enumerate(reads):
        for a in args:
            last[a] = j
    out: list[list[int]] = [[] for _ in reads]
    for a, j in last.items():
        if a not in held:
            out[j].append(a)
    return [tuple(sorted(d)) for d in out]


_STRAIGHT_LINE_MAX = 2000


def _freeze(x: Any) -> Any:
    if isinstance(x, dict):
        return tuple((k, _freeze(v)) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(v) for v in x)
    return x


def iter_kernels(backends: Iterable[Backend]) -> Iterable[Kernel]:
    for b in backends:
        for ks in b.kernels.values():
            yield from ks
