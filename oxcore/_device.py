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
    """

    def __init__(self, name: str, kind: str = "cpu", description: str = "") -> None:
        self.name, self.kind, self.description = name, kind, description or name

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


#: Host memory: buffers are ``np.ndarray``. Every leaf made from Python or NumPy data starts here.
HOST = Device("cpu", "cpu", "host memory (NumPy)")
