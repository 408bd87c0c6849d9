"""oxcore-kernels-ggml: quantized matmul kernels on ggml block types, added to existing backends.

The package registers kernels for the ``ggml_matmul`` op (declared by ``oxcore-io-gguf``) through
``oxcore_register_kernels`` only: the backends it extends are not changed. The scheduler picks,
per shape, between these kernels and the op's decomposition (dequantize + matmul), by capability
(each kernel's ``supports``) and by the autotune profile.

- ``cpu_numpy.ggml_matmul.numba`` (``_cpu``): numba GEMV for decode, tiled dequantize + BLAS for
  prefill; threads from ``OXCORE_THREADS`` (else ``NUMBA_NUM_THREADS``, else one per core).
- ``oxcore bench qmatmul`` (``_bench``): per type x shape x kernel against the copy bandwidth.
- ``oxcore_kernels_ggml.testing``: random blocks, the gguf-py float64 reference, NMSE, the
  conformance-kit cases (registered with ``oxcore_register_test_cases``: ``pytest
  --oxcore-backend NAME`` runs them on that backend's kernels).

Example:
    >>> import oxcore as ox, numpy as np
    >>> from oxcore_kernels_ggml.testing import random_blocks, reference_matmul, nmse
    >>> raw = random_blocks("Q4_K", (8, 256), np.random.default_rng(0))
    >>> x = np.ones((1, 256), np.float32)
    >>> with ox.use("cpu_numpy"):
    ...     y = ox.build("ggml_matmul", ox.asarray(x), ox.asarray(raw), ggml_type="Q4_K", shape=(8, 256))
    >>> [p.kernel.id for p in ox.explain(y).nodes]
    ['cpu_numpy.ggml_matmul.numba']
    >>> nmse(reference_matmul(x, raw, "Q4_K", (8, 256)), y.numpy()) < 1e-6
    True
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
def oxcore_register_test_cases(register: Callable[[Any], None]) -> None:
    """One ``ggml_matmul`` case per block type the kernels cover: ``pytest --oxcore-backend NAME``
    checks every backend's ggml_matmul kernels (or the decomposition where it has none)."""
    from .testing import TYPES, ggml_matmul_case

    for t in TYPES:
        register(ggml_matmul_case(t))


@hookimpl
def oxcore_register_commands(cli: Any) -> None:
    """``oxcore bench qmatmul``."""
    # NOTE: a plain click command added to the group: _bench never imports oxcore.cli
    from . import _bench

    cli.commands["bench"].add_command(_bench.bench_qmatmul)
