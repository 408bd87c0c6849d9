"""File formats. safetensors is built in; other formats come from plugins (``io_gguf``)."""

from __future__ import annotations

from .._plugins import hookimpl

OXCORE_PLUGIN_API = 1


@hookimpl(trylast=True)
def oxcore_register_formats(register):
    pass
