"""Devices: memory spaces. Buffers move between devices, never between backends on one device."""

from __future__ import annotations

from typing import Any

import numpy as np


class Device:
    """A memory space such as ``cpu`` (host NumPy memory), ``mlx:cpu`` or ``mlx:gpu``.

    Subclass it to add a device; override ``from_numpy``/``to_numpy`` (copies are fine where
    the memory really is elsewhere; views where the library allows them).

    Attributes:
        name: unique name, ``"<library>:<kind>"`` by convention (``"cpu"`` is the host).
        kind: ``"cpu"`` or ``"gpu"``.
        description: what hardware it really is (``"Apple M3 Max"``, ``"NVIDIA H100"``).
        shares_memory_with: names of devices whose memory this one's buffers *are* (host
            memory: ``("cpu",)``): ``from_numpy`` and ``to_numpy`` are views, never copies, so the
            planner charges a move between them ``SHARED_TRANSFER_US`` instead of latency +
            bytes / bandwidth. Declare only what your conversions really do.

    Example:
        >>> numba_cpu = Device("numba:cpu", "cpu", "host memory (numba)", shares_memory_with=("cpu",))
        >>> numba_cpu.shares_memory(HOST), HOST.shares_memory(numba_cpu), HOST.shares_memory(Device("x:gpu"))
        (True, True, False)
    """

    shares_memory_with: tuple[str, ...] = ()

    def __init__(self, name: str, kind: str = "cpu", description: str = "",
                 shares_memory_with: tuple[str, ...] = ()) -> None:
        self.name, self.kind, self.description = name, kind, description or name
        self.shares_memory_with = tuple(shares_memory_with)

    def shares_memory(self, other: "Device") -> bool:
        """Whether buffers move between this device and ``other`` without a copy (either side
        declares it)."""
        return other.name in self.shares_memory_with or self.name in other.shares_memory_with

    def from_numpy(self, array: np.ndarray) -> Any:
        """Make a buffer of this device from a host array (a view when the memory is shared)."""
        return array

    def to_numpy(self, buffer: Any) -> np.ndarray:
        """Return a host ``np.ndarray`` for a buffer of this device (a view where possible)."""
        return np.asarray(buffer)

    def __repr__(self) -> str:
        return f"Device({self.name!r})"

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.name == other
        return self is other or (isinstance(other, Device) and other.name == self.name)

    def __hash__(self) -> int:
        return hash(self.name)


#: what the planner charges for a move between devices that share memory (a view: one call)
SHARED_TRANSFER_US = 1.0

#: Host memory: buffers are ``np.ndarray``. Every leaf made from Python or NumPy data starts here.
HOST = Device("cpu", "cpu", "host memory (NumPy)")
