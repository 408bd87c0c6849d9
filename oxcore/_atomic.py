"""The one atomic file write every writer uses (``save``, ``convert``, shards, profiles).

A temporary file next to the target is written, flushed to disk (``fsync``), given normal
permissions and renamed over the target; the directory is then synced so the rename itself
survives a crash. A process killed at any instant (``kill -9``) leaves the target as the
complete old file or the complete new one, plus at most a stray ``.NAME.*.tmp``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

PathLike = str | os.PathLike


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
def atomic_write(path: PathLike) -> Iterator[str]:
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
