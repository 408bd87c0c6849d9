"""Autotune profiles: measured kernel times the planner prefers over static priors.

A profile is one JSON file (``oxcore profile path``; ``OXCORE_PROFILE`` overrides it, and
``OXCORE_PROFILE=off`` disables profiles). Each kernel entry is keyed on

    op | kernel id | kernel version | device fingerprint | tuning env | dtypes | shape bucket [| attrs]

so installing a new backend only adds entries, a new kernel version simply stops matching the
old ones (``oxcore autotune`` then drops them), and a different machine or thread setting never
reuses another's numbers. ``attrs`` is there only for ops that declare tuning attributes
(``register_op(..., tune_attrs=("ggml_type",))``): ``"ggml_type=Q4_K"``, so a Q4_K and a Q5_0
weight of one shape bucket are measured and chosen for separately. An entry of such an op
written before it declared them (no ``attrs``) never answers and is stale (``oxcore autotune``
drops it and measures each value). Transfers are stored per device pair as latency + bandwidth.

Example:
    >>> import oxcore as ox
    >>> from oxcore import profile
    >>> p = profile.Profile()           # an empty, in-memory profile
    >>> x = ox.ones((3, 1000))
    >>> profile.bucket_of([x._node], x._node)
    ((4, 1024), (4, 1024))
    >>> len(p), p.transfer("cpu", "cpu")
    (0, (None, None))
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from ._osutil import atomic_write, env_raw

__all__ = ["Profile", "MeasuredUs", "DecomposedKernel", "current", "reload", "active", "path", "fingerprint", "env_key", "transfer_env_key",
           "bucket_of", "dtypes_of", "attrs_of", "tune_attrs", "TUNING_ENV"]

FORMAT = 1
#: environment variables that change kernel speed; part of every entry's key
TUNING_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
              "NUMEXPR_NUM_THREADS", "MLX_ENABLE_TF32", "MLX_METAL_FAST_SYNCH", "OXCORE_NUM_THREADS")

_LOCK = threading.RLock()
_epoch = 0
_seen_env: Any = None  # raw env value (bytes on POSIX)
_loaded: "Profile | None" = None
_loaded_for: tuple = ()
_override: list = []  # stack of profiles set by ``active()``; None entries mean "no profile"


class MeasuredUs(float):
    """A cost in microseconds that came from a measurement (``explain`` marks it with ``*``)."""

    measured = True


class DecomposedKernel:
    """Stands for "run ``op`` through its decomposition on ``backend``" in profile keys, so a
    measured decomposition can beat a slow native kernel (``cpu_numpy.rope.decomposed``)."""

    __slots__ = ("op", "backend", "version", "source")
    name = "decomposed"

    def __init__(self, op: str, backend: str) -> None:
        from ._registry import REGISTRY
        from ._plugins import _version

        self.op, self.backend = op, backend
        self.source = REGISTRY[op].source  # NOTE: the decomposition's code lives where the op was declared
        self.version = _DECOMP_VERSIONS.get(self.source) or _DECOMP_VERSIONS.setdefault(self.source, _version(self.source))

    @property
    def id(self) -> str:
        return f"{self.backend}.{self.op}.decomposed"

    @classmethod
    def of(cls, op: str, backend: str) -> "DecomposedKernel":
        k = _DECOMP.get((op, backend))
        if k is None:
            k = _DECOMP[(op, backend)] = cls(op, backend)
        return k


_DECOMP_VERSIONS: dict[str, str] = {}
_DECOMP: dict[tuple[str, str], DecomposedKernel] = {}


# --- keys ------------------------------------------------------------------------------------------
def _pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def bucket_of(inputs: Iterable[Any], out: Any) -> tuple:
    """Input shapes then the output shape, every dim rounded up to a power of two."""
    return tuple(tuple(_pow2(d) for d in x.shape) for x in (*inputs, out))


def dtypes_of(inputs: Iterable[Any], out: Any) -> str:
    """``"float32,float32->float32"``: the dtypes part of a key."""
    return ",".join(x.dtype.name for x in inputs) + "->" + out.dtype.name


def tune_attrs(op: str | None) -> tuple[str, ...]:
    """The attributes that key ``op``'s entries (its ``register_op(..., tune_attrs=...)``); ()
    for an op that declares none or is not registered here."""
    from ._registry import REGISTRY

    d = REGISTRY.ops.get(op) if op is not None else None  # NOTE: .ops: never loads plugins
    return d.tune_attrs if d is not None else ()


def _attr_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    name = getattr(v, "name", None)  # NOTE: a DType or an enum member
    if isinstance(name, str):
        return name
    if isinstance(v, (tuple, list)):
        return "(" + ",".join(_attr_text(x) for x in v) + ")"
    return repr(v)


def attrs_of(op: str | None, attrs: dict[str, Any]) -> str:
    """The attrs part of a key: ``"ggml_type=Q4_K"`` for an op with ``tune_attrs``, else ``""``.

    Example:
        >>> attrs_of("add", {})
        ''
    """
    return _attrs_text((a, attrs.get(a)) for a in tune_attrs(op))


def _attrs_text(pairs: Iterable[tuple[str, Any]]) -> str:
    return ",".join(f"{a}={_attr_text(v)}" for a, v in pairs)


def attr_names(text: str) -> tuple[str, ...]:
    """The attribute names of a key's attrs part (``"ggml_type=Q4_K"`` -> ``("ggml_type",)``)."""
    return tuple(p.split("=", 1)[0] for p in text.split(",")) if text else ()


def _bucket_str(b: tuple) -> str:
    return ",".join("x".join(map(str, s)) or "()" for s in b)


def _parse_bucket(s: str) -> tuple:
    return tuple(() if p == "()" else tuple(int(d) for d in p.split("x")) for p in s.split(","))


_CPU_MODEL: str | None = None


def cpu_model() -> str:
    """The host CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    global _CPU_MODEL
    if _CPU_MODEL is None:
        name = ""
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith(("model name", "Model", "Hardware")):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        _CPU_MODEL = name or platform.processor() or platform.machine()
    return _CPU_MODEL


def fingerprint(device: Any) -> str:
    """What makes timings on ``device`` comparable: its name, description and hardware model.

    Example:
        >>> from oxcore import HOST
        >>> fingerprint(HOST).startswith("cpu; host memory (NumPy); ")
        True
    """
    hw = cpu_model() if getattr(device, "kind", "cpu") == "cpu" else ""
    return f"{device.name}; {device.description}; {hw}"


def env_key(backends: Iterable[str] = ()) -> str:
    """Tuning-relevant configuration: usable cores and any of ``TUNING_ENV`` that is set; then,
    of the named ``backends``, the thread setting of each CPU backend whose pools are set to
    other than one thread per core (``threads=torchcpu:1`` after ``torch.set_num_threads(1)``;
    ``Backend.configured_threads``). Kernel entries name their own backend, transfers the
    backends of both devices, so one library's setting never hides another's measurements.

    Example:
        >>> env_key().startswith("cores=")
        True
    """
    from ._threads import cores

    n = cores()
    parts = [f"cores={n}"] + [f"{k}={os.environ[k]}" for k in TUNING_ENV if k in os.environ]
    threads = []
    if backends:
        from ._plugins import manager

        known = manager().backends
        for name in sorted(set(backends)):
            b = known.get(name)
            try:
                t = b.configured_threads() if b is not None and b.has_thread_pools else None
            except Exception:  # NOTE: a key must never fail; a broken plugin is reported elsewhere
                t = None
            if t not in (None, n):
                threads.append(f"{name}:{t}")
    if threads:
        parts.append("threads=" + "+".join(threads))
    return ",".join(parts)


def transfer_env_key(src: str, dst: str) -> str:
    """``env_key`` for a transfer between devices ``src`` and ``dst`` (names): the thread
    settings of every backend on either side (the switch cost depends on both)."""
    from ._plugins import manager

    return env_key([b.name for b in manager().backends.values() if b.device.name in (src, dst)])


def entry_key(e: dict) -> str:
    # NOTE: the attrs part only when there is one: entries of other ops keep the keys (and the
    # files) written before attrs were keyed
    parts = (e["op"], e["kernel"], e["version"], e["device"], e["env"], e["dtypes"], e["bucket"])
    return "|".join(parts + ((e["attrs"],) if e.get("attrs") else ()))


# --- the profile -----------------------------------------------------------------------------------
class Profile:
    """Measured kernel times and transfer speeds, plus plugin-shipped defaults.

    ``data`` is the JSON document: ``{"oxcore_profile": 1, "kernels": {key: entry},
    "transfers": {key: entry}}``. ``defaults`` are entries from ``oxcore_default_profiles``
    hooks; they only answer when nothing measured does (user measurements win).
    """

    def __init__(self, file: str | os.PathLike | None = None, defaults: Iterable[dict] = ()) -> None:
        self.file = Path(file) if file is not None else None
        self.data: dict[str, Any] = _empty()
        self.defaults: list[dict] = []
        self._idx: dict[tuple, dict[tuple, float]] = {}
        self._didx: dict[tuple, dict[tuple, float]] = {}
        self._slopes: dict[int, float] = {}
        self._fp: dict[str, str | None] = {}
        self._last: tuple = (None, None)
        self._envs: dict[Any, str] = {}  # backend name or (src, dst) device names -> env key
        self.serial = next(_SERIAL)  # NOTE: identifies it in plan-cache keys (ids get reused)
        if self.file is not None:
            self.data = _read(self.file)
        for d in defaults:
            self.add_default(d, _quiet=True)
        self._reindex()

    def __len__(self) -> int:
        return len(self.data["kernels"]) + len(self.data["transfers"]) + len(self.defaults)

    def __repr__(self) -> str:
        return (f"<Profile {self.file or '(memory)'}: {len(self.data['kernels'])} kernel entries, "
                f"{len(self.data['transfers'])} transfers, {len(self.defaults)} defaults>")

    # --- writing ------------------------------------------------------------------------------
    def add(self, kernel: Any, node: Any, us: float, *, device: Any = None, **extra: Any) -> dict:
        """Record one measurement of ``kernel`` on ``node`` (in memory; ``save()`` writes it)."""
        dev = device if device is not None else _backend_device(kernel.backend)
        e = {"op": kernel.op, "kernel": kernel.id, "version": kernel.version, "source": kernel.source,
             "device": fingerprint(dev), "env": self._env_of(kernel.backend), "dtypes": dtypes_of(node.inputs, node),
             "bucket": _bucket_str(bucket_of(node.inputs, node)), "us": float(us), "at": time.time(), **extra}
        at = attrs_of(kernel.op, _node_attrs(node))
        if at:
            e["attrs"] = at
        self.data["kernels"][entry_key(e)] = e
        self._index_one(self._idx, e)
        _bump()
        return e

    def add_transfer(self, src: Any, dst: Any, latency_us: float, bytes_per_us: float, **extra: Any) -> dict:
        """Record a measured transfer between two devices (``Device`` objects)."""
        e = {"src": fingerprint(src), "dst": fingerprint(dst), "src_device": src.name, "dst_device": dst.name,
             "env": self._env_of((src.name, dst.name)), "latency_us": float(latency_us), "bytes_per_us": float(bytes_per_us),
             "at": time.time(), **extra}
        self.data["transfers"][f"{e['src']} -> {e['dst']} | {e['env']}"] = e
        _bump()
        return e

    def add_default(self, e: dict, _quiet: bool = False) -> None:
        """A shipped entry; missing ``version``/``device``/``env``/``attrs`` match anything.

        ``attrs`` (for ops with ``tune_attrs``) is a dict (``{"ggml_type": "Q4_K"}``) or the
        key text (``"ggml_type=Q4_K"``)."""
        if "transfer" in e or "src_device" in e:
            return  # NOTE: shipped transfer speeds are never trusted: they depend on the bus
        e = {"version": "*", "device": "*", "env": "*", "attrs": "*", **e}
        if isinstance(e.get("bucket"), (list, tuple)):
            e["bucket"] = _bucket_str(tuple(tuple(s) for s in e["bucket"]))
        if isinstance(e["attrs"], dict):
            e["attrs"] = _attrs_text(e["attrs"].items())
        self.defaults.append(e)
        self._index_one(self._didx, e)
        if not _quiet:
            _bump()

    def save(self, drop: Iterable[str] = ()) -> Path:
        """Merge into the file (newest entry wins per key) atomically, under a file lock.

        ``drop`` lists kernel keys to delete (stale versions). Other processes' entries written
        meanwhile are kept: the file is re-read inside the lock before it is replaced.
        """
        if self.file is None:
            raise ValueError("this profile has no file; create it with Profile(path)")
        drop = set(drop)
        with _file_lock(self.file):
            disk = _read(self.file)
            for part in ("kernels", "transfers"):
                for k, e in self.data[part].items():
                    old = disk[part].get(k)
                    if old is None or old.get("at", 0) <= e.get("at", 0):
                        disk[part][k] = e
            for k in drop:
                disk["kernels"].pop(k, None)
            _atomic_write(self.file, disk)
        self.data = disk
        self._reindex()
        _bump()
        return self.file

    def stale(self) -> list[str]:
        """Keys of entries whose kernel (or op decomposition) is installed here with another
        version, or whose attrs are not the ones their op keys now (``stale_attrs``)."""
        from ._backend import iter_kernels
        from ._plugins import manager
        from ._registry import REGISTRY

        m = manager()
        installed = {k.id: k.version for k in iter_kernels(m.backends.values())}
        for op, b in {(e["op"], e["kernel"].split(".", 1)[0]) for e in self.data["kernels"].values()
                      if e["kernel"].endswith(".decomposed")}:
            if op in REGISTRY:  # NOTE: a decomposition's version is its op's distribution's
                installed[f"{b}.{op}.decomposed"] = DecomposedKernel.of(op, b).version
        return [key for key, e in self.data["kernels"].items()
                if (e["kernel"] in installed and installed[e["kernel"]] != e["version"]) or stale_attrs(e)]

    # --- reading (the planner calls these) ------------------------------------------------------
    def has(self, kernel: Any, node: Any) -> bool:
        """Whether this exact bucket was measured for ``kernel`` on this machine and env."""
        g = self._idx.get(self._group(kernel, node, kernel.version, None, self._env_of(kernel.backend)))
        return g is not None and self._keys(node)[1] in g

    def lookup_decomposed(self, op: str, backend: str, node: Any) -> MeasuredUs | None:
        """Measured time of running ``op`` through its decomposition on ``backend``, or None."""
        return self.lookup(DecomposedKernel.of(op, backend), node)

    def lookup(self, kernel: Any, node: Any) -> MeasuredUs | None:
        """Measured time of ``kernel`` on ``node`` at the nearest shape bucket, or None.

        Nearest: same op, kernel, version, device, env and dtypes; the exact bucket if measured,
        else the bucket with the smallest log2 distance per dim, scaled to the node's size with
        the kernel's own measured size exponent (1 when only one size was measured).
        """
        key = self._group(kernel, node, kernel.version, None, self._env_of(kernel.backend))
        if key is None:
            return None
        g = self._idx.get(key)
        if g is None and self._didx:
            g = self._default_group(key)
        if not g:
            return None
        return MeasuredUs(_nearest(g, self._keys(node)[1], self._slopes))

    def transfer(self, src: str, dst: str) -> tuple[float | None, float | None]:
        """``(latency_us, bytes_per_us)`` measured from device ``src`` to ``dst`` (names)."""
        a, b = self._fingerprint_of_device(src), self._fingerprint_of_device(dst)
        if a is None or b is None:
            return None, None
        e = self.data["transfers"].get(f"{a} -> {b} | {self._env_of((src, dst))}")
        return (e["latency_us"], e["bytes_per_us"]) if e else (None, None)

    def _env_of(self, who: Any) -> str:
        """The env key of a backend's entries (its name) or of a transfer (``(src, dst)``)."""
        e = self._envs.get(who)
        if e is None:
            e = self._envs[who] = transfer_env_key(*who) if isinstance(who, tuple) else env_key([who])
        return e

    # --- internals --------------------------------------------------------------------------------
    def _keys(self, node: Any) -> tuple[str, tuple, str]:
        """(dtypes, bucket, attrs) of ``node``'s keys."""
        # NOTE: the planner asks about one node for each candidate in a row; key it once
        if node is not self._last[0]:
            self._last = (node, (dtypes_of(node.inputs, node), bucket_of(node.inputs, node),
                                 attrs_of(getattr(node, "op", None), _node_attrs(node))))
        return self._last[1]

    def _group(self, kernel: Any, node: Any, version: str, dev: str | None, env: str) -> tuple | None:
        fp = self._fp.get(kernel.backend)
        if fp is None and kernel.backend not in self._fp:
            d = _backend_device(kernel.backend)
            fp = self._fp[kernel.backend] = fingerprint(d) if d is not None else None
        if fp is None:
            return None
        dts, _, at = self._keys(node)
        return (kernel.op, kernel.id, version, dev or fp, env, dts, at)

    def _default_group(self, key: tuple) -> dict | None:
        op, kid, version, dev, env, dts, at = key
        for v in (version, "*"):
            for d in (dev, dev.split(";", 1)[0], "*"):  # exact machine, any machine with that device, any
                for en in (env, "*"):
                    for a in (at, "*"):
                        g = self._didx.get((op, kid, v, d, en, dts, a))
                        if g is not None:
                            return g
        return None

    def _fingerprint_of_device(self, name: str) -> str | None:
        key = "device:" + name
        if key not in self._fp:
            from ._plugins import manager

            d = manager().devices.get(name)
            self._fp[key] = fingerprint(d) if d is not None else None
        return self._fp[key]

    def _index_one(self, idx: dict, e: dict) -> None:
        g = idx.setdefault((e["op"], e["kernel"], e["version"], e["device"], e["env"], e["dtypes"],
                            e.get("attrs", "")), {})
        g[_parse_bucket(e["bucket"])] = float(e["us"])
        self._slopes.pop(id(g), None)

    def _reindex(self) -> None:
        self._idx, self._didx, self._slopes = {}, {}, {}
        for e in self.data["kernels"].values():
            self._index_one(self._idx, e)
        for e in self.defaults:
            self._index_one(self._didx, e)


def _node_attrs(node: Any) -> dict[str, Any]:
    return getattr(node, "attrs", None) or {}


def stale_attrs(e: dict) -> str | None:
    """Why entry ``e`` can no longer answer because of its attrs, or None: its op (registered
    here) keys other attributes than the entry has; typically an entry written before the op
    declared ``tune_attrs``, measured on one value of them without saying which."""
    if e["op"] not in _registered_ops():
        return None
    want, have = tune_attrs(e["op"]), attr_names(e.get("attrs", ""))
    if want == have:
        return None
    if not have:
        return f"measured before {', '.join(want)} keyed {e['op']}'s entries; `oxcore autotune` measures again"
    return f"keyed on {', '.join(have) or 'no attributes'}, {e['op']} now keys {', '.join(want) or 'none'}"


def _registered_ops() -> Any:
    from ._registry import REGISTRY

    return REGISTRY.ops


def _size(bucket: tuple) -> int:
    return sum(math.prod(s) for s in bucket)


def _nearest(g: dict[tuple, float], q: tuple, slopes: dict[int, float]) -> float:
    if q in g:
        return g[q]
    ranks = tuple(len(s) for s in q)
    best, bd = None, math.inf
    for b in sorted(g):  # NOTE: sorted so ties resolve the same way in every process
        if tuple(len(s) for s in b) == ranks:
            d = sum(abs(math.log2(x) - math.log2(y)) for s, t in zip(q, b) for x, y in zip(s, t))
        else:
            d = 64 + abs(math.log2(_size(q)) - math.log2(_size(b)))
        if d < bd:
            best, bd = b, d
    s = slopes.get(id(g))
    if s is None:
        s = slopes[id(g)] = _slope(g)
    return g[best] * (_size(q) / _size(best)) ** s


#: sizes measured closer together than this factor do not give a size exponent (``_slope``)
SLOPE_MIN_SPREAD = 2.0


def _slope(g: dict[tuple, float]) -> float:
    """Least-squares exponent of time over size for one kernel, clamped to [0, 1.5]; 1 when the
    measured sizes span less than ``SLOPE_MIN_SPREAD``.

    NOTE: ``ggml_matmul`` measured at 1 and 32 rows of one weight (one ggml type's entries after
    ``--quick``): the sizes differ by ~15% (the weight's bytes dominate) while the times differ
    7x, which fitted an exponent of 1.5 and scaled the LM head (1000x the weight) 30x too slow."""
    pts = [(math.log(_size(b)), math.log(max(t, 1e-3))) for b, t in g.items()]
    xs = [x for x, _ in pts]
    if len(set(xs)) < 2 or max(xs) - min(xs) < math.log(SLOPE_MIN_SPREAD):
        return 1.0
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    sxy = sum((x - mx) * (y - my) for x, y in pts)
    return min(1.5, max(0.0, sxy / sxx))


def _backend_device(name: str) -> Any:
    from ._plugins import manager

    b = manager().backends.get(name)
    return b.device if b is not None else None


# --- files -----------------------------------------------------------------------------------------
def _empty() -> dict[str, Any]:
    return {"oxcore_profile": FORMAT, "kernels": {}, "transfers": {}}


def _read(file: Path) -> dict[str, Any]:
    """The file's document; an empty one when missing, unreadable or of another format."""
    try:
        doc = json.loads(file.read_text())
    except (OSError, ValueError):
        return _empty()
    if not isinstance(doc, dict) or doc.get("oxcore_profile") != FORMAT:
        return _empty()
    return {"oxcore_profile": FORMAT, "kernels": dict(doc.get("kernels") or {}),
            "transfers": dict(doc.get("transfers") or {})}


def _atomic_write(file: Path, doc: dict) -> None:
    with atomic_write(file) as tmp, open(tmp, "w") as f:  # NOTE: readers see the old file or the new one
        json.dump(doc, f, indent=1, sort_keys=True)


@contextlib.contextmanager
def _file_lock(file: Path) -> Iterator[None]:
    """An exclusive lock on ``<file>.lock`` (fcntl); elsewhere only the re-read protects merges."""
    file.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(str(file) + ".lock", "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def path() -> Path | None:
    """Where the profile lives: ``$OXCORE_PROFILE``, else ``<user cache dir>/oxcore/profile.json``;
    None when ``OXCORE_PROFILE`` is ``off``/``none``/``0``."""
    v = os.environ.get("OXCORE_PROFILE")
    if v is not None:
        return None if v.strip().lower() in ("", "off", "none", "0") else Path(v).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("oxcore", appauthor=False)) / "profile.json"


# --- the active profile ------------------------------------------------------------------------------
def _bump() -> None:
    global _epoch
    with _LOCK:
        _epoch += 1


_EPOCHS: dict[tuple, int] = {}
_SERIAL = iter(range(1, 1 << 62))


def __getattr__(name: str) -> Any:
    if name == "EPOCH":
        return epoch()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def epoch() -> int:
    """The plan-cache key part for the active profile (``EPOCH`` reads the same)."""
    # NOTE: EPOCH is computed: it must notice OXCORE_PROFILE changing (tests, notebooks) without a
    # stat() per eval, and switching back and forth between profiles with ``active()`` must find
    # the plans cached for each again (a benchmark alternates tuned and untuned plans).
    global _seen_env, _epoch
    v = env_raw("OXCORE_PROFILE", b"OXCORE_PROFILE")
    if v != _seen_env:
        with _LOCK:
            _seen_env = v
            _epoch += 1
    top = (_override[-1].serial if _override[-1] is not None else 0) if _override else -1
    key = (_epoch, top)
    e = _EPOCHS.get(key)
    if e is None:
        with _LOCK:
            e = _EPOCHS.setdefault(key, len(_EPOCHS) + 1)
    return e


def _default_entries() -> list[dict]:
    from ._plugins import manager

    m = manager()
    out: list[dict] = []
    for impl in m.pm.hook.oxcore_default_profiles.get_hookimpls():
        info = m.plugins.get(impl.plugin_name)
        if info is None or info.status != "loaded":
            continue
        try:
            got = impl.function() or []
            for e in got:
                out.append(dict(e, shipped_by=info.distribution))
        except Exception as e:  # NOTE: a broken default profile never breaks planning
            info.reason = f"oxcore_default_profiles raised {type(e).__name__}: {e}"
    return out


def current() -> Profile | None:
    """The active profile (the file plus plugin defaults), or None when profiles are off.

    Loaded on first use and again when ``OXCORE_PROFILE`` or the installed plugins change.
    """
    global _loaded, _loaded_for
    if _override:
        return _override[-1]
    file = path()
    if file is None:
        return None
    from ._plugins import manager

    m = manager()
    key = (str(file), id(m), m.epoch)
    if _loaded is None or _loaded_for != key:
        with _LOCK:
            _loaded, _loaded_for = Profile(file, _default_entries()), key
    return _loaded


def reload() -> Profile | None:
    """Forget the loaded profile (read the file again on next use) and invalidate cached plans."""
    global _loaded
    with _LOCK:
        _loaded = None
    _bump()
    return current()


@contextlib.contextmanager
def active(profile: Profile | None) -> Iterator[None]:
    """Plan with ``profile`` inside the block (``None``: no profile, static priors only).

    Example:
        >>> import oxcore as ox
        >>> from oxcore import profile
        >>> with profile.active(None):
        ...     profile.current() is None
        True
    """
    _override.append(profile)
    try:
        yield
    finally:
        _override.pop()
