"""``oxcore.models.load``: open a model file and hand it to the plugin that knows its architecture.

The core holds no model code. Plugins register architectures through the
``oxcore_register_models`` hook (``plugins/models`` registers ``bert`` and ``gemma3``); this
module only finds the file, reads which architecture it states, and calls that loader.

Example:
    >>> import oxcore.models
    >>> oxcore.models.load("no/such/model.gguf")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    FileNotFoundError: model 'no/such/model.gguf' not found: expected a .gguf or .safetensors file, ...
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ._errors import FormatError, UnknownNameError

__all__ = ["Architecture", "architectures", "load", "resolve"]


@dataclass(frozen=True)
class Architecture:
    """One registered model architecture.

    Attributes:
        name: the architecture as files state it (``"gemma3"``, ``"bert"``).
        loader: ``loader(file, metadata) -> model``.
        formats: file formats it reads (``("gguf",)``, ``("safetensors",)``).
        doc: one line for listings.
        default: ``default() -> path | None``: an installed model of this architecture.
        distribution: the plugin's distribution.
    """

    name: str
    loader: Callable[[Any, dict], Any]
    formats: tuple[str, ...] = ("gguf",)
    doc: str = ""
    default: Callable[[], Any] | None = field(default=None, compare=False)
    distribution: str = ""


_CACHE: dict[int, dict[str, Architecture]] = {}


def architectures() -> dict[str, Architecture]:
    """Every architecture registered by the installed plugins, by name (collected once per
    plugin-set epoch; a plugin whose hook raises is marked failed in ``oxcore plugins list``)."""
    from ._plugins import manager

    m = manager()
    epoch = getattr(m, "epoch", 0)
    if epoch in _CACHE:
        return _CACHE[epoch]
    found: dict[str, Architecture] = {}
    for impl in reversed(m.pm.hook.oxcore_register_models.get_hookimpls()):
        info = m.plugins.get(impl.plugin_name)
        if info is not None and info.status != "loaded":
            continue
        dist = info.distribution if info is not None else impl.plugin_name

        def register(name: str, loader: Callable, *, formats: tuple[str, ...] = ("gguf",), doc: str = "",
                     default: Callable[[], Any] | None = None, _dist: str = dist) -> None:
            found[name] = Architecture(name, loader, tuple(formats), doc, default, _dist)

        try:
            impl.function(register=register)
        except Exception as e:  # NOTE: one broken plugin never hides the others' models
            if info is not None:
                info.status, info.reason = "failed", f"oxcore_register_models raised {type(e).__name__}: {e}"
    _CACHE.clear()
    _CACHE[epoch] = found
    return found


def _unknown(arch: str, where: str) -> UnknownNameError:
    known = ", ".join(sorted(architectures())) or "none (install oxcore-models)"
    return UnknownNameError(f"{where} is a {arch!r} model, which no installed plugin can run; "
                            f"known architectures: {known}")


def resolve(path_or_name: Any) -> tuple[Path, str, dict]:
    """(file, architecture, metadata) for a model path or an architecture name, reading headers only.

    A directory is searched for one ``.gguf`` file or a ``model.safetensors`` with its
    ``config.json``; a bare architecture name means that architecture's installed default.
    """
    from ._io import load as load_file

    archs = architectures()
    s = os.fspath(path_or_name)
    if s in archs and not os.path.exists(s):
        a = archs[s]
        p = a.default() if a.default is not None else None
        if p is None:
            raise FileNotFoundError(f"no installed {s!r} model was found; pass a model file path")
        s = os.fspath(p)
    p = Path(s)
    if not p.exists():
        raise FileNotFoundError(f"model {s!r} not found: expected a .gguf or .safetensors file, a directory "
                                f"holding one, or an architecture name ({', '.join(sorted(archs)) or 'none'})")
    if p.is_dir():
        ggufs = sorted(p.glob("*.gguf"))
        if (p / "model.safetensors").exists():
            p = p / "model.safetensors"
        elif len(ggufs) == 1:
            p = ggufs[0]
        else:
            raise FileNotFoundError(f"{p} holds no model.safetensors and {len(ggufs)} .gguf files; pass the file")
    if p.suffix.lower() == ".safetensors":
        cfg = p.parent / "config.json"
        if not cfg.exists():
            raise FormatError(p, None, "a safetensors model needs its config.json beside it (it names the "
                                       "architecture: model_type)")
        try:
            meta = json.loads(cfg.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise FormatError(cfg, None, f"not valid JSON: {e}") from None
        arch = str(meta.get("model_type", ""))
        if arch not in archs:
            raise _unknown(arch, str(p))
        return p, arch, meta
    f = load_file(p)
    meta = dict(f.metadata)
    arch = str(meta.get("general.architecture", ""))
    if arch not in archs:
        raise _unknown(arch, str(p))
    return p, arch, meta


def load(path_or_name: Any) -> Any:
    """Load a model: a file (``.gguf``, ``.safetensors`` with ``config.json``), a directory, or an
    architecture name meaning its installed default model.

    Returns what the architecture's loader returns: an object with ``embed(texts)`` for
    encoders, ``generate(prompt, ...)`` (an iterator of text pieces) for decoders.

    Raises:
        FileNotFoundError: nothing at that path, or no installed default.
        UnknownNameError: no installed plugin registers the file's architecture.
        FormatError: the file is truncated or corrupt.
    """
    from ._io import load as load_file

    p, arch, meta = resolve(path_or_name)
    if p.suffix.lower() != ".safetensors":  # NOTE: a safetensors model's metadata is its config.json
        # NOTE: resolve's metadata holds its own mapping of the file: the loader gets one mapping, not two
        del meta
        f = load_file(p)
        meta = dict(f.metadata)
    else:
        f = load_file(p)
    return architectures()[arch].loader(f, meta)
