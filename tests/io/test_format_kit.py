"""The format kit (``pytest --oxcore-format NAME``) tests what a format declares in
``Format.capabilities``: the docs' single-tensor ``Npy`` example passes it as written, and
formats that break their declaration fail it."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import oxcore as ox
from oxcore.extend import Format, FormatCapabilities, manager
from oxcore.testing import formats as kit
from oxcore.testing.suite import test_format_hostile as kit_hostile, test_format_roundtrip as kit_roundtrip

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins_examples"))
from _docs import blocks  # noqa: E402

HOOKS = Path(__file__).resolve().parents[2] / "docs" / "plugins" / "hooks.md"


@pytest.fixture(scope="module")
def docs_npy() -> Iterator[Format]:
    """The hooks.md ``oxcore_register_formats`` snippet, run as a module (it registers itself)."""
    (code,) = [b for b in blocks(HOOKS) if "class Npy(Format)" in b]
    mod = types.ModuleType("npy_docs_example")
    sys.modules[mod.__name__] = mod
    try:
        exec(compile(code, str(HOOKS), "exec"), mod.__dict__)
        yield manager().formats["npy"]
    finally:
        manager().unregister_plugin("npy_demo")
        del sys.modules[mod.__name__]


def test_docs_npy_example_passes_the_kit(docs_npy, tmp_path):
    assert docs_npy.capabilities.many_tensors is False
    kit_roundtrip("npy", tmp_path / "rt")
    (tmp_path / "hostile").mkdir()
    kit_hostile("npy", tmp_path / "hostile")
    done = kit.roundtrip("npy", tmp_path / "again")
    assert "bfloat16" not in done and {"float32", "int64", "complex128", "bool"} <= set(done)


def test_save_refuses_what_a_format_cannot_store(docs_npy, tmp_path):
    x = ox.asarray(np.arange(3, dtype=np.float32))
    with pytest.raises(ValueError, match="stores one tensor per file, got 2: a, b"):
        ox.save(tmp_path / "two.npy", {"a": x, "b": x})
    with pytest.raises(TypeError, match="is bfloat16, which format 'npy' cannot store; valid dtypes are: bool"):
        ox.save(tmp_path / "b.npy", {"a": x.astype(ox.bfloat16)})
    assert list(tmp_path.iterdir()) == []


# --- formats that break what they declare: the kit must fail them -----------------------------------
class _Mem(Format):
    """Keeps the arrays in a dict by path; the file holds a key (enough for the kit's checks)."""

    suffixes = (".mem",)
    store: dict[str, dict[str, np.ndarray]] = {}

    def __init__(self, name: str, caps: FormatCapabilities, tamper: Any = None) -> None:
        self.name, self.capabilities, self.tamper = name, caps, tamper
        self.suffixes = (f".{name}",)

    def open(self, path: Any) -> Any:
        from oxcore.extend import FormatError, LazyFile, TensorInfo

        data = Path(path).read_bytes()
        if data not in self.store:
            raise FormatError(path, 0, "unknown key")
        arrays = self.store[data]
        infos = {n: TensorInfo(n, ox.dtype(a.dtype), a.dtype.str, a.shape, a.nbytes, 0, str(path))
                 for n, a in arrays.items()}
        return LazyFile(path, self, {}, infos, lambda i: ox.asarray(arrays[i.name]), lambda i: np.zeros(0, np.uint8))

    def save(self, path: Any, tensors: Any, metadata: Any = None) -> None:
        arrays = {n: np.array(ox.asarray(t).numpy()) for n, t in tensors.items()}
        if self.tamper:
            arrays = self.tamper(arrays)
        key = f"{self.name}:{len(self.store)}".encode()
        self.store[key] = arrays
        Path(path).write_bytes(key)


@pytest.fixture
def register_format() -> Iterator[Any]:
    from oxcore.extend import hookimpl

    names = []

    def register(fmt: Format) -> Format:
        plugin = type("P", (), {"OXCORE_PLUGIN_API": 1})()
        plugin.oxcore_register_formats = hookimpl(lambda register: register(fmt))
        manager().register_plugin(plugin, f"kit_{fmt.name}")
        names.append(f"kit_{fmt.name}")
        return fmt

    yield register
    for n in names:
        manager().unregister_plugin(n)


def test_a_format_that_keeps_its_promises_passes(register_format, tmp_path):
    register_format(_Mem("memok", FormatCapabilities(dtypes=("float32", "int8"))))
    assert kit.roundtrip("memok", tmp_path) == ["int8", "float32"]


@pytest.mark.parametrize("name, caps, tamper, message", [
    ("memdrop", FormatCapabilities(), lambda a: {"x": a["x"]}, "saved x and scalar, read ['x']"),
    ("memcast", FormatCapabilities(dtypes=("float32", "float64")), lambda a: {n: v.astype(np.float32) for n, v in a.items()},
     "float64: saved float64(3, 32), read float32(3, 32)"),
    ("memflip", FormatCapabilities(many_tensors=False), lambda a: {n: v[::-1].copy() for n, v in a.items()},
     "values differ"),
])
def test_the_kit_fails_a_format_that_breaks_its_declaration(register_format, tmp_path, name, caps, tamper, message):
    register_format(_Mem(name, caps, tamper))
    with pytest.raises(AssertionError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        kit.roundtrip(name, tmp_path)


def test_a_save_that_refuses_a_declared_dtype_fails(register_format, tmp_path):
    class Picky(_Mem):
        def save(self, path, tensors, metadata=None):
            if any(ox.asarray(t).dtype == ox.int8 for t in tensors.values()):
                raise TypeError("no int8 after all")
            super().save(path, tensors, metadata)

    register_format(Picky("mempicky", FormatCapabilities(dtypes=("float32", "int8"))))
    with pytest.raises(AssertionError, match="refused int8, which its capabilities declare"):
        kit.roundtrip("mempicky", tmp_path)


def test_read_only_formats_skip_the_round_trip_with_the_reason(register_format, tmp_path):
    register_format(_Mem("memro", FormatCapabilities(can_write=False)))
    with pytest.raises(pytest.skip.Exception, match="read-only"):
        kit_roundtrip("memro", tmp_path)
    with pytest.raises(TypeError, match="format 'memro' is read-only; formats that write: .*safetensors"):
        ox.save(tmp_path / "x.memro", {"x": ox.ones(2)})
    with pytest.raises(ValueError, match=r"declare Format.broken_files\(\)"):
        kit.corpus("memro")
