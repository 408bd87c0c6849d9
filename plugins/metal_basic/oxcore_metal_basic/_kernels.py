"""The kernel table: op name -> ``mlx.core`` function (imports mlx: load it from factories only)."""

from __future__ import annotations

from typing import Any

from ._kernels_api import API
from ._kernels_core import CORE
from ._kernels_nn import NN

KERNELS: dict[str, Any] = {**CORE, **NN, **API}
