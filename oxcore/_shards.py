"""Sharded saving: ``oxcore.save(path, tensors, max_shard_size="2GB")`` writes the Hugging Face
layout: ``model-00001-of-00003.safetensors``... plus ``model.safetensors.index.json``
(``{"metadata": {"total_size": N}, "weight_map": {tensor: shard}}``)."""

from __future__ import annotations

import contextlib
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

from ._osutil import atomic_write

_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(size: int | str) -> int:
    """Bytes in ``size``: an int, or a string like ``"2GB"`` (10**9, as Hugging Face counts) or ``"512MiB"``.

    Example:
        >>> from oxcore._shards import parse_size
        >>> parse_size("2GB"), parse_size("1.5KiB"), parse_size(4096)
        (2000000000, 1536, 4096)
    """
    if isinstance(size, bool) or not isinstance(size, (int, str)):
        raise TypeError(f"max_shard_size must be an int (bytes) or a string like '2GB', got {type(size).__name__}")
    if isinstance(size, int):
        n = size
    else:
        m = _SIZE.match(size)
        unit = m.group(2).upper() if m else ""
        if m is None or unit not in _UNITS and unit != "":
            raise ValueError(f"Invalid max_shard_size: {size!r}. Expected a number and a unit; valid units are: "
                             f"{', '.join(u if u == 'B' else u[:-2] + 'iB' if 'I' in u else u for u in _UNITS)}")
        n = int(float(m.group(1)) * _UNITS[unit or "B"])
    if n <= 0:
        raise ValueError(f"max_shard_size must be positive, got {size!r}")
    return n


def _nbytes(x: Any) -> int:
    return math.prod(int(d) for d in x.shape) * int(x.dtype.itemsize)


def plan_shards(tensors: Mapping[str, Any], max_bytes: int) -> list[list[str]]:
    """Group tensor names in order into shards of at most ``max_bytes`` (a bigger tensor gets
    a shard of its own), the way Hugging Face's ``save_pretrained`` does."""
    shards: list[list[str]] = [[]]
    size = 0
    for name, x in tensors.items():
        nb = _nbytes(x)
        if shards[-1] and size + nb > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nb
    return shards


def save_sharded(path: Path, tensors: Mapping[str, Any], metadata: Mapping[str, Any] | None, fmt: Any,
                 max_shard_size: int | str) -> None:
    """Write ``tensors`` as shards of ``fmt`` next to ``path`` plus the index (one file when they fit)."""
    if fmt.name != "safetensors":
        raise ValueError(f"max_shard_size writes sharded safetensors (the Hugging Face layout); format "
                         f"{fmt.name!r} cannot be sharded. Save to a .safetensors path, or drop max_shard_size")
    groups = plan_shards(tensors, parse_size(max_shard_size))
    if len(groups) == 1:
        with atomic_write(path) as tmp:
            fmt.save(tmp, tensors, metadata)
        return
    suffix = "".join(path.suffixes[-1:])
    stem = path.name[: -len(suffix)] if suffix else path.name
    names = [f"{stem}-{i:05d}-of-{len(groups):05d}{suffix}" for i in range(1, len(groups) + 1)]
    weight_map = {n: shard for shard, group in zip(names, groups) for n in group}
    # NOTE: every shard is complete on disk before any is renamed into place, and the index comes
    # last: a crash leaves the previous checkpoint or the new one, save for the instant of renames
    with contextlib.ExitStack() as stack:
        for shard, group in zip(names, groups):
            tmp = stack.enter_context(atomic_write(path.parent / shard))
            fmt.save(tmp, {n: tensors[n] for n in group}, metadata)
    index = {"metadata": {"total_size": sum(_nbytes(x) for x in tensors.values())}, "weight_map": weight_map}
    with atomic_write(path.parent / f"{path.name}.index.json") as tmp, open(tmp, "w") as f:
        json.dump(index, f, indent=2)
    old = re.compile(re.escape(stem) + r"-\d{5}-of-\d{5}" + re.escape(suffix) + "$")
    for q in path.parent.iterdir():  # NOTE: shards of an earlier save with another count are stale now
        if old.match(q.name) and q.name not in names:
            q.unlink()
