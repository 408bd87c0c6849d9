"""File formats. safetensors is built in; other formats come from plugins (``io_gguf``).

This module is itself a plugin (listed in ``oxcore._plugins.BUILTIN``): the builtin formats come
through the same hook as a third party's.
"""

from __future__ import annotations

from .._plugins import hookimpl

OXCORE_PLUGIN_API = 1


@hookimpl(trylast=True)
def oxcore_register_formats(register):
    from .safetensors import Safetensors

    register(Safetensors())
