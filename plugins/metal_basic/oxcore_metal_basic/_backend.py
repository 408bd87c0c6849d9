"""The MLX backend class shared by metal_basic and metal_fused (no mlx import at module load)."""

from __future__ import annotations

from typing import Any, Callable

from oxcore.extend import Backend, Device, Segment

from ._support import make_supports

# Static cost priors (microseconds, bytes per microsecond) before any profile exists, by
# platform. NOTE: on MLX's CPU device an op costs a graph node plus an eval, and MLX's CPU
# kernels (Linux, mlx-cpu) measured 5-50x slower than NumPy's (`oxcore bench ops`: exp of 262k
# floats 12.2 ms vs 0.26 ms), so an untuned plan keeps CPU work on cpu_numpy (launch 2 us,
# 8e3 bytes/us): a plan is never slower than NumPy alone before `oxcore autotune` measures.
# On a GPU the bandwidth term dominates and MLX wins.
PRIORS = {  # platform -> (launch_us, bytes_per_us)
    "cpu": (15.0, 8e2),
    "metal": (6.0, 2e5),
    "cuda": (6.0, 1e6),
}


class MLXBackend(Backend):
    """Runs every op on MLX, one lazy MLX graph per segment, evaluated once (``mx.eval``).

    Attributes:
        missing: why MLX cannot be used here ("" when it can).
    """

    name = "metal_basic"
    fuses = False
    # NOTE: no thread_pools: MLX's CPU backend (Linux, mlx-cpu) runs its ops on the caller's
    # thread and links a single-threaded reference BLAS, so it never fights NumPy's OpenBLAS
    # priority on a GPU / on MLX's CPU (cpu_numpy is 0: NumPy is the better CPU backend)
    gpu_priority, cpu_priority = 10, -20
    launch_scale = 1.0  # fused backends launch fewer kernels per node

    def __init__(self, device: Device | None = None, missing: str = "") -> None:
        super().__init__()
        self.missing = missing
        if device is None:  # NOTE: a truthful stand-in so listings can say why it is unavailable
            device = Device("mlx:unavailable", "cpu", f"MLX unavailable: {missing}")
        self.device = device
        plat = getattr(device, "platform", "cpu")
        launch, bw = PRIORS.get(plat, PRIORS["cpu"])
        self.launch_us, self.bytes_per_us = launch * self.launch_scale, bw
        self.priority = self.gpu_priority if device.kind == "gpu" else self.cpu_priority

    def available(self) -> tuple[bool, str]:
        return (False, self.missing) if self.missing else (True, "")

    def add_kernels(self, table: dict[str, Callable], extra_checks: dict[str, Callable] | None = None,
                    name: str = "default", prior_us: Callable[[Any], float] | None = None) -> None:
        """Register ``table`` (op -> kernel fn) with this device's capability checks."""
        extra_checks = extra_checks or {}
        for op, fn in table.items():
            self.kernel(op, supports=make_supports(self.device, op, extra_checks.get(op)), name=name,
                        prior_us=prior_us)(fn)

    def _stream(self) -> Any:
        import mlx.core as mx

        dev = self.device.mx_device
        return None if mx.default_device() == dev else dev

    def evaluated(self, build: Callable[[list], list]) -> Callable[[list], list]:
        """``run(inputs)``: ``build(inputs)`` on this backend's MLX stream, its outputs evaluated
        in one ``mx.eval`` (metal_fused wraps its compiled segments the same way)."""
        import mlx.core as mx

        stream = self._stream()

        def run(inputs: list) -> list:
            if stream is None:
                outs = build(inputs)
                mx.eval(outs)
                return outs
            with mx.stream(stream):  # NOTE: OXCORE_MLX_DEVICE=cpu on a machine whose default is the GPU
                outs = build(inputs)
                mx.eval(outs)
            return outs
        return run

    def compile_segment(self, segment: Segment) -> Callable[[list], list]:
        """Build the segment's MLX graph op by op, then evaluate all its outputs in one ``mx.eval``."""
        return self.evaluated(segment.interpreter())

    def synchronize(self) -> None:
        if not self.missing:
            import mlx.core as mx

            mx.synchronize()
