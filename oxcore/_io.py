"""``oxcore.load`` and ``oxcore.save``: pick the format, open shards, write atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._dtypes import dtype as as_dtype
from ._errors import FormatError, UnknownNameError
from ._format import Format, LazyFile, PathLike, TensorFile
from ._osutil import atomic_write
from ._mapping import in_memory

INDEX_SUFFIX = ".index.json"
_INDEX_CAP = 64 << 20  # NOTE: real index files are kilobytes; refuse to parse a giant one


def formats() -> dict[str, Format]:
    """The registered formats by name (builtin safetensors plus plugins)."""
    from ._plugins import manager

    return manager().formats


def _known() -> str:
    return ", ".join(f"{f.name} ({' '.join(f.suffixes)})" for f in formats().values()) or "(none)"


def get_format(name: str) -> Format:
    fs = formats()
    if name not in fs:
        raise UnknownNameError(f"Unknown format {name!r}. Registered formats: {_known()}")
    return fs[name]


def format_for(path: PathLike, *, reading: bool = True) -> Format:
    """The format that handles ``path``: by content (``sniff``) when reading, else by suffix."""
    fs = list(formats().values())
    by_suffix = [f for f in fs if f.matches_suffix(path)]
    if not reading:
        if not by_suffix:
            raise UnknownNameError(f"No format writes {Path(path).name!r} (unknown suffix). "
                                   f"Registered formats: {_known()}")
        return by_suffix[0]
    with open(path, "rb") as fh:
        head = fh.read(64)
    for f in by_suffix + [f for f in fs if f not in by_suffix]:
        try:
            if f.sniff(path, head):
                return f
        except Exception:  # NOTE: a plugin's broken sniff must not hide the others
            continue
    if by_suffix:
        return by_suffix[0]  # its open() says precisely what is wrong
    raise FormatError(path, 0, f"not a file of any registered format; registered formats: {_known()}")


def _open(path: PathLike, fmt: Format | None) -> LazyFile:
    f = fmt or format_for(path)
    lf = f.open(path)
    if not isinstance(lf, LazyFile):
        raise TypeError(f"format {f.name!r} returned {type(lf).__name__} from open(), expected a LazyFile")
    return lf


def _merge(files: list[LazyFile], origin: PathLike, metadata: Mapping[str, Any] | None = None) -> TensorFile:
    where: dict[str, LazyFile] = {}
    for f in files:
        for n in f:
            if n in where:
                raise FormatError(f.path, f.info(n).offset, f"tensor {n!r} is also in {where[n].path}")
            where[n] = f
    return TensorFile(files, metadata, where)


def _load_index(path: Path, fmt: Format | None) -> TensorFile:
    size = path.stat().st_size
    if size > _INDEX_CAP:
        raise FormatError(path, 0, f"index file is {size} bytes, over the {_INDEX_CAP}-byte limit")
    try:
        idx = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise FormatError(path, e.start, "index is not valid UTF-8") from None
    except (ValueError, RecursionError) as e:
        raise FormatError(path, getattr(e, "pos", 0), f"index is not valid JSON: {e}") from None
    wm = idx.get("weight_map") if isinstance(idx, dict) else None
    if not isinstance(wm, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in wm.items()):
        raise FormatError(path, 0, "index needs a \"weight_map\" object of tensor name -> shard file name")
    meta = idx.get("metadata") or {}
    if not isinstance(meta, dict):
        raise FormatError(path, 0, f"index \"metadata\" must be an object, got {type(meta).__name__}")
    root = path.parent.resolve()
    shards: dict[str, LazyFile] = {}
    for shard in dict.fromkeys(wm.values()):
        p = (root / shard).resolve()
        if Path(shard).is_absolute() or root not in p.parents:
            raise FormatError(path, 0, f"shard {shard!r} is outside the index's directory")
        if not p.is_file():
            raise FormatError(path, 0, f"shard {shard!r} named in the weight_map does not exist")
        shards[shard] = _open(p, fmt)
    where = {}
    for name, shard in wm.items():
        if name not in shards[shard]:
            raise FormatError(shards[shard].path, None, f"tensor {name!r} is not in this shard, "
                                                        f"but {path.name} says it is")
        where[name] = shards[shard]
    merged: dict[str, Any] = {}
    for lf in shards.values():
        merged.update(lf.metadata)
    merged.update(meta)
    return TensorFile(list(shards.values()), merged, where)


def load(path: PathLike, *, format: str | None = None, mmap: bool = True) -> TensorFile:
    """Open a model file lazily: a mapping ``name -> Array`` plus ``.metadata``.

    ``path`` may be a file (the format is recognised from its first bytes, then its suffix),
    a ``*.index.json`` of a sharded checkpoint, or a directory (its index if it has one, else
    every file of a registered format in it). Only headers are read now; each tensor is a
    memory-mapped, zero-copy view made into an Array when you index the mapping.

    A mapping reads the file as it is *now*: every evaluation touching a mapped tensor first
    checks that the file kept its size, mtime and inode, and raises ``FormatError`` if not
    (instead of crashing on a truncated file). ``mmap=False`` reads the files into memory
    now, so the arrays never depend on the file again (see docs/guide/files.md).

    Args:
        path: file, index or directory.
        format: force a format by name (``"safetensors"``, ``"gguf"``).
        mmap: map the files (default); False reads them whole into memory.

    Raises:
        FormatError: the file is corrupt, truncated or hostile (names file, offset, problem),
            or (when mapped) changed after it was opened.

    Example:
        >>> import oxcore as ox, tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> ox.save(os.path.join(d, "m.safetensors"), {"w": ox.arange(6).reshape((2, 3))})
        >>> f = ox.load(d)
        >>> sorted(f), f["w"].sum().item()
        (['w'], 15)
    """
    with in_memory(not mmap):
        return _load(Path(path), get_format(format) if format else None)


def _load(p: Path, fmt: Format | None) -> TensorFile:
    if p.is_dir():
        idx = sorted(p.glob(f"*{INDEX_SUFFIX}"))
        if idx:
            return _load_index(idx[0], fmt)
        fs = [fmt] if fmt else list(formats().values())
        files = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")
                       and any(f.matches_suffix(q) for f in fs))
        if not files:
            raise FormatError(p, None, f"no model files in this directory; registered formats: {_known()}")
        return _merge([_open(q, fmt) for q in files], p)
    if p.name.endswith(INDEX_SUFFIX):
        return _load_index(p, fmt)
    return TensorFile([_open(p, fmt)])


def host_array(x: Any) -> np.ndarray:
    """A host NumPy array for an Array (evaluated), a NumPy array (as is) or anything array-like."""
    from ._array import Array

    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, Array):
        return x.numpy()
    from .ops.creation import asarray

    return asarray(x).numpy()


def refuse_unstorable(fmt: Format, tensors: Mapping[str, Any]) -> None:
    """Raise, before anything is written, for what ``fmt.capabilities`` says it cannot store."""
    caps = fmt.capabilities
    if not caps.can_write:
        raise TypeError(f"format {fmt.name!r} is read-only; formats that write: "
                        f"{', '.join(f.name for f in formats().values() if f.capabilities.can_write) or '(none)'}")
    if not caps.many_tensors and len(tensors) != 1:
        raise ValueError(f"format {fmt.name!r} stores one tensor per file, got {len(tensors)}"
                         f"{': ' + ', '.join(list(tensors)[:8]) if tensors else ''}; save each to its own file")
    if caps.dtypes is None:
        return
    for name, x in tensors.items():
        try:
            dt = as_dtype(x.dtype)
        except (AttributeError, TypeError, ValueError, KeyError):
            continue  # NOTE: no dtype, or one oxcore does not know: the format's own save decides
        if not caps.stores(dt):
            raise TypeError(f"tensor {name!r} is {dt.name}, which format {fmt.name!r} cannot store; "
                            f"valid dtypes are: {', '.join(caps.dtypes)}")


def save(path: PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, Any] | None = None, *,
         format: str | None = None, max_shard_size: int | str | None = None) -> None:
    """Write tensors to a file whose format is picked from the suffix (or ``format=``).

    The write is atomic: a temporary file in the same directory is renamed over ``path`` once
    complete, so readers never see a half-written file. Lazy Arrays are evaluated one at a time
    while writing.

    Args:
        path: target file (``.safetensors``, ``.gguf`` with ``oxcore-io-gguf``...).
        tensors: name -> Array (or NumPy array).
        metadata: format metadata (safetensors: str -> str).
        format: force a format by name.
        max_shard_size: split into safetensors shards of at most this size (``"2GB"``, ``"500MiB"``
            or bytes) named ``model-00001-of-0000N.safetensors`` next to ``path``, plus the
            ``model.safetensors.index.json`` that Hugging Face tools and ``oxcore.load`` read.
            Everything fitting in one shard is written to ``path`` alone.

    Example:
        >>> import oxcore as ox, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "x.safetensors")
        >>> ox.save(p, {"a": ox.asarray([1.0, 2.0])})
        >>> ox.load(p)["a"].tolist()
        [1.0, 2.0]
    """
    if not isinstance(tensors, Mapping):
        raise TypeError(f"save() needs a mapping of name -> array, got {type(tensors).__name__}")
    for k in tensors:
        if not isinstance(k, str):
            raise TypeError(f"tensor names must be str, got {type(k).__name__} {k!r}")
    fmt = get_format(format) if format else format_for(path, reading=False)
    refuse_unstorable(fmt, tensors)
    if max_shard_size is not None:
        from ._shards import save_sharded

        return save_sharded(Path(path), tensors, metadata, fmt, max_shard_size)
    with atomic_write(path) as tmp:
        fmt.save(tmp, tensors, metadata)
