"""oxcore-kernels-ggml: quantized matmul kernels on ggml block types, added to existing backends.

The package registers kernels for the ``ggml_matmul`` op (declared by ``oxcore-io-gguf``) through
``oxcore_register_kernels`` only: the backends it extends are not changed. The scheduler picks,
per shape, between these kernels and the op's decomposition (dequantize + matmul), by capability
(each kernel's ``supports``) and by the autotune profile.
"""

from __future__ import annotations

import importlib.metadata

from typing import Any, Callable

from oxcore import hookimpl

OXCORE_PLUGIN_API = 1
__version__ = importlib.metadata.version("oxcore-kernels-ggml")

__all__ = ["OXCORE_PLUGIN_API", "__version__"]


@hookimpl
def oxcore_register_kernels(register: Callable[[Any], None]) -> None:
    # NOTE: each module decides for itself whether its library is importable; nothing heavy loads here
    from . import _cpu, _mlx

    for k in (*_cpu.kernels(), *_mlx.kernels()):
        register(k)


@hookimpl
def oxcore_register_commands(cli: Any) -> None:
    """``oxcore bench qmatmul``."""
    # NOTE: a plain click command added to the group: _bench never imports oxcore.cli
    from . import _bench

    cli.commands["bench"].add_command(_bench.bench_qmatmul)
