"""Give back resident pages a generating process no longer needs (Linux only).

Gemma's weights stay in the file mapping, and a decode step reads all of them, so the whole
GGUF is resident while generating. Peak RSS is that file plus everything else the process
touched before it, including pages it will never touch again:

- **shared-library code used only while numba compiles or loads a kernel**: LLVM
  (``libllvmlite.so``) alone leaves ~70 MiB of code pages resident after the first kernel
  loads from numba's cache. ``drop_library_pages_after_numba_compiles`` drops the clean
  pages of every shared library (``MADV_DONTNEED``) each time numba releases its compiler
  lock; pages still in use (NumPy, libpython) fault back in from the page cache (a drop and
  its refaults took 15-25 ms on a busy 2-core machine; 8 of them load Gemma's kernels).
  While numba holds the lock, the model file's pages go too (``drop_mapped_file_pages``), so
  a kernel first loaded after the weights were read does not add LLVM on top of the file.
- **the GGUF header** (tokenizer strings, ~8 MiB for Gemma's 262k pieces), read once to
  build the tokenizer: io_gguf's ``StringArray.drop_pages``.
- **heap freed after building the model**: glibc keeps it once ``_malloc`` raised its
  thresholds; ``trim_heap`` returns it (``malloc_trim``).

Dropped pages are clean copies of files: they stay in the page cache and come back on the
next touch, so nothing is lost, only counted less.

Example:
    >>> from oxcore_models._pages import drop_library_pages, trim_heap
    >>> drop_library_pages() >= 0, trim_heap() in (True, False)
    (True, True)
"""

from __future__ import annotations

import mmap
import sys
from typing import Any

__all__ = ["drop_library_pages", "drop_library_pages_after_numba_compiles", "drop_mapped_file_pages",
           "numba_kernels", "settle_after_build", "trim_heap"]

_LINUX = sys.platform.startswith("linux")
_HOOKED: list[Any] = []


def _libc() -> Any:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def _clean_ranges(libraries: bool) -> list[tuple[int, int]]:
    """Address ranges whose resident pages can be dropped without losing anything, from
    ``/proc/self/smaps``: shared libraries' read-only private mappings holding no private copy of
    any page (``Anonymous: 0``; a relocated page would revert to the file's bytes), or
    (``libraries=False``) read-only shared mappings of other files (``oxcore.load``'s model
    files: their pages are the page cache itself)."""
    out: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(maxsplit=6)
            if not head[0].endswith(":"):  # NOTE: a mapping's first line: range perms offset dev inode [path]
                cur = None
                perms, path = head[1], head[5].rstrip("\n") if len(head) > 5 else ""
                lib = path.endswith(".so") or ".so." in path
                if "w" in perms or not path.startswith("/"):
                    continue
                if libraries and lib and perms[3] == "p" or not libraries and not lib and perms[3] == "s":
                    cur = tuple(int(x, 16) for x in head[0].split("-"))  # type: ignore[assignment]
            elif head[0] == "Anonymous:" and cur is not None:
                if int(head[1]) == 0:
                    out.append(cur)
                cur = None
    return out


def _drop(libraries: bool) -> int:
    if not _LINUX:
        return 0
    try:
        libc, ranges = _libc(), _clean_ranges(libraries)
    except OSError:
        return 0
    for a, b in ranges:
        libc.madvise(a, b - a, mmap.MADV_DONTNEED)
    return sum(b - a for a, b in ranges)


def drop_library_pages() -> int:
    """Drop the resident clean pages of every shared library; returns the bytes advised (0 off Linux).

    Code still in use faults back in from the page cache on its next call.
    """
    return _drop(libraries=True)


def drop_mapped_file_pages() -> int:
    """Drop the resident pages of every read-only shared file mapping (model files mapped by
    ``oxcore.load``); returns the bytes advised (0 off Linux). The next read faults them back
    in from the page cache."""
    return _drop(libraries=False)


def drop_library_pages_after_numba_compiles() -> bool:
    """From now on, drop library pages (``drop_library_pages``) whenever numba releases its
    compiler lock (after compiling or loading a kernel from its cache), and once now.

    Installed once per process; False when numba is not installed or off Linux.
    """
    if _HOOKED:
        return True
    if not _LINUX:
        return False
    try:
        import numba.core.event as ev
        from numba.core.compiler_lock import global_compiler_lock
    except ImportError:
        return False

    class _DropAfterCompile(ev.Listener):
        def on_start(self, event: Any) -> None:
            # NOTE: a compile (or cache load) touches ~20-70 MiB of LLVM: while it runs, the model's
            # pages need not be resident too (the next step reads them back from the page cache)
            if not global_compiler_lock.is_locked():  # NOTE: the lock nests: act on the outermost
                drop_mapped_file_pages()

        def on_end(self, event: Any) -> None:
            if not global_compiler_lock.is_locked():
                drop_library_pages()

    listener = _DropAfterCompile()
    ev.register("numba:compiler_lock", listener)
    _HOOKED.append(listener)
    drop_library_pages()
    return True


def trim_heap() -> bool:
    """Return the heap's free pages to the OS (glibc's ``malloc_trim(0)``); False elsewhere."""
    if not _LINUX:
        return False
    try:
        libc = _libc()
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


def settle_after_build(metadata: Any, numba_kernels: bool) -> None:
    """What a model built from a GGUF calls once, before its first step reads the weights:
    drop the pages of the tokenizer strings, return the heap the build freed, and (when numba
    kernels will run) drop library code after each kernel compiles or loads."""
    tokens = metadata.get("tokenizer.ggml.tokens") if hasattr(metadata, "get") else None
    if hasattr(tokens, "drop_pages"):
        tokens.drop_pages()
    trim_heap()
    if numba_kernels:
        drop_library_pages_after_numba_compiles()


def numba_kernels(op: str, backend: str | None) -> bool:
    """Whether ``backend`` (None: any available backend) has a numba kernel for ``op``
    (kernel ids name their implementation last, e.g. ``cpu_numpy.ggml_matmul.numba``)."""
    from oxcore.extend import manager

    m = manager()
    names = [backend] if backend else [b.name for b in m.available_backends()]
    return any("numba" in k.id.rsplit(".", 1)[-1] for n in names for k in m.backend(n).kernels_for(op))
