"""The MLX device shared by both MLX backends: buffers are ``mlx.core.array``.

MLX runs on one device per process here: the GPU when MLX has one (Metal on Apple silicon,
CUDA with ``mlx-cuda``), else MLX's CPU. ``OXCORE_MLX_DEVICE=cpu`` forces the CPU (useful to
compare both on one machine). mlx is imported only when the device is first made.
"""

from __future__ import annotations

import functools
import os
import platform
from typing import Any

import numpy as np
from oxcore import bfloat16
from oxcore.extend import Device


@functools.lru_cache(maxsize=None)
def _mx_dtype_named(name: str) -> Any:
    import mlx.core as mx

    return getattr(mx, "bool_" if name == "bool" else name)


def mx_dtype(dt: Any) -> Any:
    """The ``mlx.core`` dtype for an oxcore DType (or a NumPy dtype)."""
    return _mx_dtype_named(dt.name if hasattr(dt, "is_floating") else np.dtype(dt).name)


class MLXDevice(Device):
    """``mlx:gpu`` or ``mlx:cpu``: a memory space whose buffers are ``mlx.core.array``.

    Attributes:
        platform: ``"metal"``, ``"cuda"`` or ``"cpu"`` (what MLX really runs on).
        mx_device: the ``mlx.core.Device`` the kernels run on.
    """

    def __init__(self, mx_device: Any, platform: str, description: str) -> None:
        kind = "cpu" if platform == "cpu" else "gpu"
        # NOTE: no shares_memory_with, although MLX's memory is host memory on the CPU (and on
        # Apple silicon the GPU's too): mx.array(np_array) copies, so a move from the host is a
        # copy and the planner's transfer cost must say so (autotune measures the real one)
        super().__init__(f"mlx:{kind}", kind, description)
        self.platform, self.mx_device = platform, mx_device
        self._scalars: dict[tuple, Any] = {}

    def from_numpy(self, array: np.ndarray, *, shared: bool = True) -> Any:
        """Copy a host array into MLX memory (bfloat16 travels as its uint16 bits).

        0-d arrays (the Python scalars of expressions) are cached by dtype and value: MLX
        arrays are immutable, and a scalar crosses to the device on every call otherwise.
        ``shared=False`` makes a new array (a constant baked into an ``mx.compile``d function
        must not be the very array that is also passed in as an input).
        """
        if array.ndim == 0 and shared:
            key = (array.dtype.str, array.tobytes())
            buf = self._scalars.get(key)
            if buf is None:
                if len(self._scalars) >= 4096:
                    self._scalars.clear()
                buf = self._scalars[key] = self._copy(array)
            return buf
        return self._copy(array)

    def _copy(self, array: np.ndarray) -> Any:
        import mlx.core as mx

        if array.dtype.name == "bfloat16":
            return mx.array(array.view(np.uint16)).view(mx.bfloat16)
        # NOTE: the dtype is explicit: mx.array would turn float64 into float32 silently
        return mx.array(array, dtype=_mx_dtype_named(array.dtype.name))

    def to_numpy(self, buffer: Any) -> np.ndarray:
        """A NumPy view of MLX memory through the buffer protocol (evaluates ``buffer`` first)."""
        import mlx.core as mx

        if buffer.dtype == mx.bfloat16:  # NOTE: PEP 3118 has no bfloat16 format; view the bits
            return np.asarray(memoryview(buffer.view(mx.uint16))).view(bfloat16.numpy)
        return np.asarray(memoryview(buffer))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=None)
def mlx_device() -> MLXDevice:
    """The process's MLX device (one instance, shared by metal_basic and metal_fused)."""
    import mlx.core as mx

    want = os.environ.get("OXCORE_MLX_DEVICE", "").strip().lower()
    if want not in ("", "gpu", "cpu"):
        raise ValueError(f"Invalid OXCORE_MLX_DEVICE: {want!r}. Valid values are: gpu, cpu")
    if want != "cpu" and mx.is_available(mx.gpu):
        info = mx.device_info(mx.gpu)
        name = str(info.get("device_name") or info.get("architecture") or "GPU")
        plat = "cuda" if mx.cuda.is_available() else "metal"
        return MLXDevice(mx.gpu, plat, f"{'CUDA' if plat == 'cuda' else 'Metal'}: {name} (MLX {mx.__version__})")
    name = mx.device_info(mx.cpu).get("device_name") or _cpu_name()
    return MLXDevice(mx.cpu, "cpu", f"CPU: {name} (MLX {mx.__version__} CPU backend)")
