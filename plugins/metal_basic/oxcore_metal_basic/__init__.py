"""oxcore-metal-basic: every oxcore op on MLX (``mlx.core``), one MLX graph per segment.

It runs on whatever MLX has: Metal on Apple silicon, CUDA with ``mlx[cuda]``, MLX's CPU
otherwise, and says which (``oxcore backends list``). mlx is imported inside the factory, not
when this entry point loads. The device and backend class are shared with oxcore-metal-fused.

Example:
    >>> import oxcore as ox
    >>> with ox.use("metal_basic"):
    ...     y = ox.asarray([1.0, 2.0]) * 2
    >>> y.tolist()
    [2.0, 4.0]
"""

from __future__ import annotations

import importlib.metadata

import sys
from typing import Any

from oxcore import hookimpl  # NOTE: only oxcore loads this module, so oxcore is importable

from ._backend import MLXBackend
from ._device import MLXDevice

OXCORE_PLUGIN_API = 1
__version__ = importlib.metadata.version("oxcore-metal-basic")  # NOTE: written once, in oxcore/VERSION
__all__ = ["OXCORE_PLUGIN_API", "make_backend", "mlx_device", "MLXBackend", "MLXDevice", "kernel_table",
           "mlx_missing"]


def mlx_missing() -> str:
    """Why MLX cannot run here, or "" when it can (imports mlx)."""
    try:
        import mlx.core as mx

        mx.array(0)  # NOTE: a broken CUDA/Metal runtime fails here rather than at first eval
    except Exception as e:  # ImportError, or the runtime failing to start
        hint = ""
        if sys.platform == "linux":
            hint = (" (on Linux MLX needs a backend package: pip install 'oxcore-metal-basic[cpu]', "
                    "or [cuda13] / [cuda12])")
        return f"mlx is not importable: {type(e).__name__}: {e}{hint}"
    return ""


def kernel_table() -> dict[str, Any]:
    """op name -> MLX kernel function (imports mlx)."""
    from ._kernels import KERNELS

    return dict(KERNELS)


def mlx_device() -> Any:
    """The shared MLX device (``mlx:gpu`` or ``mlx:cpu``); imports mlx."""
    from ._device import mlx_device as _d

    return _d()


def make_backend() -> Any:
    """Build the metal_basic backend (unavailable, with the reason, when MLX is missing)."""
    missing = mlx_missing()
    if missing:
        return MLXBackend(missing=missing)
    b = MLXBackend(mlx_device())
    b.version = __version__
    b.add_kernels(kernel_table())
    return b


@hookimpl
def oxcore_register_backends(register: Any) -> None:
    register(make_backend())
