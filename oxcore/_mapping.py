"""Mapped model files: one read-only mmap per opened file, and what happens when the file changes.

A tensor loaded from a file is a zero-copy view on a read-only ``mmap``. If another program
truncates that file afterwards, touching a view kills the process with ``SIGBUS``; if it
rewrites the file in place, the view silently shows new bytes. So every evaluation that
reads a mapped buffer first compares the file with what was opened (size, mtime, inode,
device) and raises ``FormatError`` when it changed. ``oxcore.load(path, mmap=False)`` reads
files into memory instead: those arrays never depend on the file again.

What the check cannot do: a change *during* an evaluation that already passed it (or reads
through ``.numpy()`` views kept by the caller) is not seen; see docs/guide/files.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import mmap
import os
import threading
import weakref
from typing import Any, Iterator

import numpy as np

from ._errors import FormatError

#: what ``oxcore inspect`` and the docs say about mapped tensors
GUARANTEE = ("tensors are memory-mapped (zero-copy): every evaluation that reads one first checks that the "
             "file kept its size, mtime and inode, and raises FormatError if it changed. Not covered: a change "
             "while an evaluation is already reading, and NumPy views you took with .numpy(). "
             "oxcore.load(path, mmap=False) reads the file into memory instead.")

#: id(mmap) -> the _Watch of each live mapping; empty when nothing is mapped (the eval fast path)
LIVE: dict[int, "_Watch"] = {}
_LOCK = threading.Lock()
_IN_MEMORY: contextvars.ContextVar[bool] = contextvars.ContextVar("oxcore_load_in_memory", default=False)


def _ident(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def _describe(old: tuple, new: tuple | None) -> str:
    if new is None:
        return "it was deleted or renamed"
    what = []
    if old[0] != new[0]:
        what.append(f"size {old[0]} -> {new[0]} bytes")
    if old[1] != new[1]:
        what.append("modification time changed")
    if old[2:] != new[2:]:
        what.append("it was replaced by another file (inode changed)")
    return ", ".join(what)


class _Watch:
    """What a mapping was made from; ``check()`` raises ``FormatError`` when the file changed."""

    __slots__ = ("path", "ident")

    def __init__(self, path: str, ident: tuple) -> None:
        self.path, self.ident = path, ident

    def check(self) -> None:
        try:
            now = _ident(os.stat(self.path))
        except OSError:
            now = None
        if now != self.ident:
            raise FormatError(self.path, None, f"file changed since it was opened ({_describe(self.ident, now)}); "
                                               "tensors mapped from it can no longer be read safely. Load it "
                                               "again, or load with oxcore.load(path, mmap=False) to read it "
                                               "into memory")


@contextlib.contextmanager
def in_memory(on: bool = True) -> Iterator[None]:
    """While active, ``MappedFile``s made read their whole file into memory (``load(mmap=False)``)."""
    token = _IN_MEMORY.set(on)
    try:
        yield
    finally:
        _IN_MEMORY.reset(token)


class MappedFile:
    """One read-only mmap of a file, made on first use and kept alive by the views on it.

    Under ``oxcore.load(path, mmap=False)`` the whole file is read into memory when this is
    made instead, and views are on that copy. Formats make one per opened file and take
    views with ``view()``; the scheduler checks the file before each evaluation reading one.

    Example:
        >>> import os, tempfile, numpy as np
        >>> from oxcore.extend import MappedFile
        >>> p = os.path.join(tempfile.mkdtemp(), "raw.bin")
        >>> _ = open(p, "wb").write(np.arange(4, dtype=np.float32).tobytes())
        >>> MappedFile(p, 16).view(4, 8, np.dtype(np.float32), (2,)).tolist()
        [1.0, 2.0]
    """

    def __init__(self, path: Any, size: int) -> None:
        self.path, self.size = str(path), size
        self._mm: Any = None
        self._lock = threading.Lock()
        with open(self.path, "rb") as f:
            st = os.fstat(f.fileno())
            self.in_memory = _IN_MEMORY.get()
            if self.in_memory:
                data = f.read(size + 1) if st.st_size == size else b""
                if len(data) != size:  # NOTE: the file changed between reading its header and now
                    raise FormatError(self.path, None, f"file changed size while it was read "
                                                       f"({size} -> {st.st_size} bytes)")
                self._mm = data
        self._watch = _Watch(self.path, _ident(st))

    def get(self) -> Any:
        """The mapping (or the in-memory bytes); raises ``FormatError`` if the file changed."""
        with self._lock:
            if self._mm is None:
                try:
                    f = open(self.path, "rb")
                except OSError:
                    self._watch.check()  # NOTE: deleted or renamed: says so as a FormatError
                    raise
                with f:
                    # NOTE: mapping past the end would SIGBUS on access; refuse any change instead
                    if _ident(os.fstat(f.fileno())) != self._watch.ident:
                        self._watch.check()
                    if self.size == 0:
                        self._mm = b""
                        return self._mm
                    mm = mmap.mmap(f.fileno(), self.size, access=mmap.ACCESS_READ)
                key = id(mm)
                with _LOCK:
                    LIVE[key] = self._watch
                weakref.finalize(mm, _forget, key, self._watch)
                self._mm = mm
            return self._mm

    def view(self, offset: int, nbytes: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """Zero-copy read-only array over ``[offset, offset + nbytes)`` (bounds already checked)."""
        if offset < 0 or offset + nbytes > self.size:
            raise FormatError(self.path, offset, f"{nbytes} bytes at offset {offset} are outside the file")
        if nbytes == 0:
            try:
                a = np.empty(shape, dtype)
            except ValueError as e:  # NOTE: a zero-size shape NumPy cannot represent, e.g. (2**63, 0)
                raise FormatError(self.path, offset, f"empty tensor of shape {shape}: {e}") from None
            a.flags.writeable = False
            return a
        return np.frombuffer(self.get(), dtype=dtype, count=nbytes // dtype.itemsize, offset=offset).reshape(shape)


def _forget(key: int, watch: _Watch) -> None:
    with _LOCK:
        if LIVE.get(key) is watch:
            del LIVE[key]


def check_buffers(bufs: list) -> None:
    """Raise ``FormatError`` if any host buffer in ``bufs`` is a view on a file that changed.

    Called before every run when something is mapped (``LIVE`` is non-empty).
    """
    checked = None
    for b in bufs:
        if type(b) is not np.ndarray:
            continue
        r = b.base
        if r is None:  # NOTE: owns its memory (every kernel result): the common case, one test
            continue
        while type(r) is np.ndarray:
            r = r.base
        if type(r) is memoryview:
            r = r.obj
        w = LIVE.get(id(r))
        if w is not None and w is not checked:
            w.check()
            checked = w
