"""What every layer asks of the operating system: environment variables and atomic file writes.

The bottom of the core: it imports nothing from oxcore, so any module may use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

# NOTE: the eval path reads a few variables per call; os.environ.get encodes and decodes each
# time (~1.5 us). On POSIX the raw bytes mapping answers the same question for ~0.05 us.
_RAW_ENV = getattr(os.environ, "_data", None) if os.name == "posix" else None


def env_raw(name: str, key: bytes | None = None) -> Any:
    """An environment variable's value (bytes on POSIX, str elsewhere; None when unset), cheaply.

    For cache keys, not for display. ``key`` is ``name.encode()`` precomputed by hot callers.

    Example:
        >>> import os
        >>> os.environ["OXCORE_DOC_X"] = "1"
        >>> env_raw("OXCORE_DOC_X") in (b"1", "1")
        True
    """
    if _RAW_ENV is not None:
        return _RAW_ENV.get(key if key is not None else name.encode())
    return os.environ.get(name)


def env_list(name: str) -> list[str] | None:
    """A comma-separated environment variable as a list of names (None when unset or empty).

    Example:
        >>> import os
        >>> os.environ["OXCORE_DOC_LIST"] = " a, b,,c "
        >>> env_list("OXCORE_DOC_LIST")
        ['a', 'b', 'c']
    """
    v = os.environ.get(name)
    if v is None:
        return None
    return [s.strip() for s in v.split(",") if s.strip()]


def env_flag(name: str) -> bool:
    """True when the variable is set to anything but empty or ``0`` (``OXCORE_STRICT=1``)."""
    return os.environ.get(name, "") not in ("", "0")


def _fsync_path(path: str, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # NOTE: some platforms (Windows) cannot open a directory; the rename still happened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # NOTE: e.g. a directory on a filesystem without directory fsync
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success sync it and rename it over ``path``,
    else delete it. Readers (and a crash at any point) see the old file or the new one.

    Example:
        >>> import tempfile, os
        >>> from oxcore.extend import atomic_write
        >>> p = os.path.join(tempfile.mkdtemp(), "out.bin")
        >>> with atomic_write(p) as tmp:
        ...     _ = open(tmp, "wb").write(b"ok")
        >>> open(p, "rb").read()
        b'ok'
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        _fsync_path(tmp)  # NOTE: without it a crash after the rename can leave an empty or torn file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # NOTE: mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, p)
        _fsync_path(str(p.parent), directory=True)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
