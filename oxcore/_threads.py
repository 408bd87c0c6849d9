"""CPU thread pools of backends: limiting them, and sharing the cores when a plan mixes them.

Two CPU libraries that each start one worker thread per core fight when their work
alternates: OpenBLAS's workers keep spinning for milliseconds after a NumPy matmul, and an
OpenMP library's workers starting meanwhile wait for them (a 25 us kernel took 7 ms on two
cores). A backend names its pools (``Backend.thread_pools``, threadpoolctl's names) or
overrides ``Backend.limit_threads``; a plan whose segments run on two or more such CPU
backends gets a ``Partition`` step first, which hands each of them an equal share of the cores
for the run. Plans on one backend run with the libraries' own settings.

The partition is applied once per change (a plan that runs again finds it in place: an
identity check), through threadpoolctl's library controllers (about 1 us a call once they
were found; scanning the loaded libraries takes ~0.7 ms, again only after new imports).

Example:
    >>> from oxcore._threads import Partition, cores
    >>> p = Partition(())                     # no backend with pools: nothing to limit
    >>> p.step([]) == [] and cores() >= 1
    True
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Iterable

__all__ = ["cores", "limit_pools", "pool_threads", "Partition", "current", "restore_all"]

_controller: list[Any] = []  # [threadpoolctl controller, len(sys.modules) when it scanned]
_original: dict[str, int] = {}  # library file -> its thread count before oxcore limited it


def cores() -> int:
    """The cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _libraries(pools: tuple[str, ...]) -> list[Any]:
    """threadpoolctl's controllers of the loaded libraries that ``pools`` names (a user_api such
    as ``"blas"``/``"openmp"``, an internal_api such as ``"openblas"``, or a file prefix)."""
    if not pools:
        return []
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a core dependency
        return []
    if not _controller or _controller[1] != len(sys.modules):
        # NOTE: rescan (~0.7 ms) when modules were imported since: a library loaded later (numba's
        # OpenMP, SciPy's OpenBLAS) must be seen; partitions change rarely, so this is rare too
        _controller[:] = [ThreadpoolController(), len(sys.modules)]
    found = [lib for lib in _controller[0].lib_controllers
             if lib.user_api in pools or lib.internal_api in pools or lib.prefix in pools]
    return found


def limit_pools(pools: tuple[str, ...], n: int | None) -> None:
    """Set the libraries ``pools`` names to ``n`` threads; ``None`` restores what they had.

    Example:
        >>> limit_pools(("blas",), 1); limit_pools(("blas",), None)
    """
    for lib in _libraries(tuple(pools)):
        key = lib.filepath
        if n is None:
            if key in _original:
                lib.set_num_threads(_original.pop(key))
            continue
        _original.setdefault(key, lib.num_threads)
        lib.set_num_threads(int(n))


def pool_threads(pools: tuple[str, ...]) -> int | None:
    """How many threads the libraries ``pools`` names are configured for (what they had before
    oxcore limited them), the largest if several; None when none is loaded."""
    best = None
    for lib in _libraries(tuple(pools)):
        n = _original.get(lib.filepath, lib.num_threads)
        best = n if best is None else max(best, n)
    return best


class Partition:
    """Each of ``backends`` gets ``max(1, cores() // len(backends))`` threads while a plan runs.

    ``step`` is a plan step (no inputs, no outputs): it applies the partition unless it is
    already the one in place. ``Partition(())`` is the plain setting: it restores every pool
    oxcore limited (plans on one pooled backend, in a process that also has others, start with
    it).
    """

    __slots__ = ("backends", "threads", "key")

    def __init__(self, backends: Iterable[Any]) -> None:
        self.backends = tuple(sorted(set(backends), key=lambda b: b.name))
        self.threads = max(1, cores() // len(self.backends)) if self.backends else None
        # NOTE: the objects (a reloaded plugin's are new), interned so `step` is an identity check
        self.key = _KEYS.setdefault((self.backends, self.threads), (self.backends, self.threads))

    def step(self, _inputs: list) -> list:
        if _current[0] is not self.key:
            self.apply()
        return []

    def apply(self) -> None:
        for b in _current[1]:
            if b not in self.backends:
                _limit(b, None)
        for b in self.backends:
            _limit(b, self.threads)
        _current[:] = [self.key, self.backends]

    def __repr__(self) -> str:
        names = ", ".join(b.name for b in self.backends) or "none"
        return f"<Partition {names}: {self.threads} threads each>"


def _limit(b: Any, n: int | None) -> None:
    try:
        b.limit_threads(n)
    except Exception as e:  # NOTE: a plugin's broken hook costs it its share, never the evaluation
        if b.name not in _warned:
            _warned.add(b.name)
            warnings.warn(f"{b.name}.limit_threads({n}) raised {type(e).__name__}: {e}; its threads are "
                          f"left as they are", RuntimeWarning, stacklevel=3)


_warned: set[str] = set()
_KEYS: dict[tuple, tuple] = {}
_current: list[Any] = [_KEYS.setdefault(((), None), ((), None)), ()]  # [key of the partition in place, its backends]


def current() -> tuple:
    """The partition in place: ``(backend names, threads each)``; ``((), None)`` when none."""
    backends, threads = _current[0]
    return tuple(b.name for b in backends), threads


def restore_all() -> None:
    """Give every pool oxcore limited its own setting back."""
    Partition(()).apply()
