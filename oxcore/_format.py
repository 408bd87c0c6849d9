"""File formats: the ``Format`` a plugin implements, and the lazy mappings a read returns.

A format parses only the header when a file is opened and describes every tensor with a
``TensorInfo``; the values are memory-mapped views made into Arrays when you index the mapping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ._dtypes import DType, dtype as as_dtype
from ._errors import UnknownNameError

PathLike = str | os.PathLike


@dataclass(frozen=True)
class TensorInfo:
    """What a file says about one tensor (``TensorFile.info(name)``).

    Attributes:
        name: the tensor's name in the file.
        dtype: the oxcore dtype of the Array that indexing the mapping gives.
        type: the stored type in the format's own words (``"BF16"``, ``"F8_E4M3"``, ``"Q4_K"``).
        shape: the logical shape (row-major, outermost first, for every format).
        nbytes: bytes the tensor occupies in the file.
        offset: absolute byte offset of those bytes in the file.
        path: the file that holds it.
        quantized: True for block-quantized types (the Array dequantizes lazily).
    """

    name: str
    dtype: DType
    type: str
    shape: tuple[int, ...]
    nbytes: int
    offset: int
    path: str
    quantized: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype.name, "type": self.type, "shape": list(self.shape),
                "nbytes": self.nbytes, "offset": self.offset, "path": self.path, "quantized": self.quantized}


class LazyFile(Mapping[str, Any]):
    """One opened file: what ``Format.open`` returns.

    Indexing calls ``realize(info)`` each time (cheap: a view on the mapped file, or a lazy
    node over it), so nothing is computed or cached until you use the Array.

    Args:
        path: the file.
        format: the ``Format`` that opened it.
        metadata: the file's metadata (str -> str for safetensors, typed values for GGUF).
        infos: name -> ``TensorInfo``, in file order.
        realize: ``realize(info) -> Array``.
        raw: ``raw(info) -> np.ndarray`` of the stored bytes (uint8, zero-copy).
    """

    def __init__(self, path: PathLike, format: "Format", metadata: Mapping[str, Any],
                 infos: Mapping[str, TensorInfo], realize: Callable[[TensorInfo], Any],
                 raw: Callable[[TensorInfo], np.ndarray]) -> None:
        self.path, self.format = str(path), format
        # NOTE: keep a dict subclass as is (GGUF's remembers value types for writing back)
        self.metadata = metadata if isinstance(metadata, dict) else dict(metadata)
        # NOTE: a Mapping is kept as is, so a format may build TensorInfos lazily
        self._infos = infos if isinstance(infos, Mapping) else dict(infos)
        self._realize, self._raw = realize, raw

    def __getitem__(self, name: str) -> Any:
        return self._realize(self.info(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    def info(self, name: str) -> TensorInfo:
        try:
            return self._infos[name]
        except KeyError:
            raise no_tensor(name, self.path, list(self._infos)) from None

    def raw(self, name: str) -> np.ndarray:
        return self._raw(self.info(name))


def no_tensor(name: str, path: str, names: list[str]) -> UnknownNameError:
    """The error for a tensor name a file does not have, listing (the first of) those it has."""
    return UnknownNameError(f"No tensor {name!r} in {path}; it has {len(names)} tensors"
                            f"{': ' + ', '.join(names[:8]) if names else ''}{', ...' if len(names) > 8 else ''}")


class TensorFile(Mapping[str, Any]):
    """A lazy mapping ``name -> Array`` over one file or several shards (``oxcore.load``).

    Opening read only the headers. Indexing gives an Array backed by the memory-mapped file
    (zero-copy) or, for quantized and float8 types, a lazy node that decodes those bytes
    when evaluated.

    Attributes:
        metadata: the file's metadata (for shards: the index's ``metadata`` merged over the
            shards' own).
        format: the format's name (``"safetensors"``, ``"gguf"``).
        files: the ``LazyFile`` of each shard.

    Example:
        >>> import numpy as np, oxcore as ox, tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "m.safetensors")
        >>> ox.save(p, {"w": ox.ones((2, 3))}, metadata={"step": "7"})
        >>> f = ox.load(p)
        >>> f["w"].shape, f.metadata["step"], f.info("w").type
        ((2, 3), '7', 'F32')
    """

    def __init__(self, files: list[LazyFile], metadata: Mapping[str, Any] | None = None,
                 where: Mapping[str, LazyFile] | None = None) -> None:
        self.files = files
        self.format = files[0].format.name if files else ""
        if metadata is None:
            if len(files) == 1:
                metadata = files[0].metadata
            else:
                metadata = {}
                for f in files:
                    metadata.update(f.metadata)
        self.metadata = metadata if isinstance(metadata, dict) else dict(metadata)
        if where is None:
            where = {}
            for f in files:
                for n in f:
                    where[n] = f
        self._where = dict(where)

    @property
    def path(self) -> str:
        return self.files[0].path if len(self.files) == 1 else str(Path(self.files[0].path).parent)

    def _file(self, name: str) -> LazyFile:
        f = self._where.get(name)
        if f is None:
            raise no_tensor(name, self.path, list(self._where))
        return f

    def __getitem__(self, name: str) -> Any:
        return self._file(name)[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, name: object) -> bool:
        return name in self._where

    def info(self, name: str) -> TensorInfo:
        """dtype, stored type, shape, nbytes, offset and file of one tensor (no data is read).

        Example:
            >>> import oxcore as ox, tempfile, os
            >>> p = os.path.join(tempfile.mkdtemp(), "m.safetensors")
            >>> ox.save(p, {"b": ox.zeros((4,), dtype=ox.bfloat16)})
            >>> i = ox.load(p).info("b")
            >>> i.type, i.shape, i.nbytes
            ('BF16', (4,), 8)
        """
        return self._file(name).info(name)

    def raw(self, name: str) -> np.ndarray:
        """The stored bytes of one tensor as a read-only uint8 view (quantized blocks as-is)."""
        return self._file(name).raw(name)

    def __repr__(self) -> str:
        return f"<TensorFile {self.format} {self.path!r}: {len(self)} tensors, {len(self.metadata)} metadata keys>"


@dataclass(frozen=True)
class FormatCapabilities:
    """What a format can store; ``oxcore.save`` and the conformance kit hold it to this.

    Attributes:
        many_tensors: a file holds any number of named tensors (safetensors, GGUF); False for
            one tensor per file (``.npy``), whose name the file need not keep.
        dtypes: the dtype names it stores, or None to let ``save`` decide (it must refuse what
            it cannot store with ``TypeError``/``ValueError``).
        can_write: False for a read-only format (no ``save``).

    ``oxcore.save`` refuses, before anything is written, a second tensor for a single-tensor
    format (``ValueError``), a dtype outside ``dtypes`` (``TypeError``) and any save to a
    read-only format (``TypeError``).

    Example:
        >>> from oxcore.extend import FormatCapabilities
        >>> caps = FormatCapabilities(many_tensors=False, dtypes=("float32", "int64"))
        >>> caps.stores("float32"), caps.stores("bfloat16"), FormatCapabilities().stores("bfloat16")
        (True, False, True)
    """

    many_tensors: bool = True
    dtypes: tuple[str, ...] | None = None
    can_write: bool = True

    def __post_init__(self) -> None:
        if self.dtypes is not None:
            # NOTE: DType objects, NumPy dtypes and names are all accepted; names are kept
            object.__setattr__(self, "dtypes", tuple(as_dtype(d).name for d in self.dtypes))

    def stores(self, dtype: Any) -> bool:
        """Whether a tensor of ``dtype`` (name or DType) may be saved (True when undeclared)."""
        return self.dtypes is None or getattr(dtype, "name", dtype) in self.dtypes


class Format:
    """A file format: subclass it and register an instance through ``oxcore_register_formats``.

    Reading must be lazy (``open`` parses the header only) and hostile files must raise
    ``FormatError(path, offset, reason)``: never crash, never read outside the file, never
    allocate from a size the file claims before checking it against the file's size.

    Example:
        >>> from oxcore.extend import Format, hookimpl
        >>> class Npy(Format):
        ...     name, suffixes = "npy", (".npy",)
        ...     def sniff(self, path, head):
        ...         return head.startswith(b"\\x93NUMPY")
        >>> Npy().matches_suffix("a/b.npy")
        True

    Attributes:
        name: unique format name (``oxcore.load(..., format=name)``).
        suffixes: file suffixes, lower case with the dot (``(".gguf",)``); ``oxcore.save``
            picks the format by suffix.
        description: one line for listings.
        capabilities: a ``FormatCapabilities``: one or many tensors per file, the dtypes it
            stores, whether it writes. The default (many tensors, ``save`` decides the dtypes,
            writable) is what safetensors and GGUF declare.
    """

    name: str = ""
    suffixes: tuple[str, ...] = ()
    description: str = ""
    distribution: str = ""
    capabilities: FormatCapabilities = FormatCapabilities()

    def matches_suffix(self, path: PathLike) -> bool:
        return str(path).lower().endswith(tuple(s.lower() for s in self.suffixes))

    def broken_files(self) -> list | None:
        """Hand-made broken files for the conformance kit (``oxcore.testing.formats.Case``
        objects, each with the offset and reason reading it must report), or None for the
        kit's generic corpus (damaged copies of a file this format saves)."""
        return None

    def valid_files(self) -> list | None:
        """Tricky but valid files (``Case`` objects with ``valid=True``) for the kit, or None."""
        return None

    def sniff(self, path: PathLike, head_bytes: bytes) -> bool:
        """Whether the file looks like this format, judging from its first bytes (up to 64)."""
        return False

    def open(self, path: PathLike) -> LazyFile:
        """Parse and validate the header; return a ``LazyFile``. Raise ``FormatError``."""
        raise NotImplementedError(f"format {self.name!r} cannot read")

    def save(self, path: PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> None:
        """Write ``tensors`` (name -> Array or NumPy array) to ``path``.

        ``oxcore.save`` passes a temporary path in the target directory and renames it
        afterwards (``oxcore.extend.atomic_write``), so a format may write in place. Formats may
        take extra keyword options (``progress=callable(name, nbytes)``, ``quantize=...``).
        """
        raise NotImplementedError(f"format {self.name!r} cannot write")

    def __repr__(self) -> str:
        return f"<Format {self.name} {' '.join(self.suffixes)}>"
