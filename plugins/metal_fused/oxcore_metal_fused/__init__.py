"""oxcore-metal-fused: MLX backend that compiles whole segments and uses ``mx.fast``.

Same device as oxcore-metal-basic (``mlx:gpu`` or ``mlx:cpu``, so no transfers between the
two), same kernels, plus: each segment is compiled once with ``mx.compile`` (elementwise
chains such as SwiGLU, GELU and residual adds fuse into single kernels), and rms_norm,
layer_norm, rope and scaled_dot_product_attention go to ``mx.fast``. mlx is imported inside
the factory, not when this entry point loads.

Example:
    >>> import oxcore as ox
    >>> with ox.use("metal_fused"):
    ...     y = ox.rms_norm(ox.asarray([[3.0, 4.0]]))
    >>> [round(v, 3) for v in y.tolist()[0]]
    [0.849, 1.131]
"""

from __future__ import annotations

import importlib.metadata

from typing import Any

from oxcore import hookimpl  # NOTE: only oxcore loads this module, so oxcore is importable

from ._backend import FusedBackend, shapeless_key

OXCORE_PLUGIN_API = 1
__version__ = importlib.metadata.version("oxcore-metal-fused")  # NOTE: written once, in oxcore/VERSION
__all__ = ["OXCORE_PLUGIN_API", "FusedBackend", "make_backend", "shapeless_key"]


def make_backend() -> Any:
    """Build the metal_fused backend (unavailable, with the reason, when MLX is missing)."""
    from oxcore_metal_basic import kernel_table, mlx_device, mlx_missing

    missing = mlx_missing()
    if missing:
        return FusedBackend(missing=missing)
    from ._fast import CHECKS, KERNELS

    b = FusedBackend(mlx_device())
    b.version = __version__
    # NOTE: mx.fast kernels sit beside the mlx.core ones (which still take float64 on the CPU,
    # or mixed-dtype parameters); a lower prior makes them win wherever they accept the node,
    # under a pin too (a pin chooses the backend; among its kernels the cheapest wins)
    b.add_kernels(KERNELS, CHECKS, name="fast", prior_us=lambda node: 0.5 * b.prior_us(node))
    b.add_kernels(kernel_table())
    return b


@hookimpl
def oxcore_register_backends(register: Any) -> None:
    register(make_backend())


@hookimpl
def oxcore_register_commands(cli: Any) -> None:
    """``oxcore bench ops``, ``bench block``, ``bench grad`` and ``bench train``: the MLX backends against MLX,
    NumPy and JAX."""
    # NOTE: plain click commands added to the group here: the modules never import oxcore.cli, so
    # importing one of them first (doctest collection) does not start loading the plugins
    from . import _bench, _bench_grad, _bench_train

    for cmd in (_bench.bench_ops, _bench.bench_block, _bench_grad.bench_grad, _bench_train.bench_train):
        cli.commands["bench"].add_command(cmd)
