"""What planning needs from the layers above it, handed down as objects by ``oxcore._runtime``.

Planning sits below ``Array`` and the plugin manager, so it never imports them: the runtime
installs a ``Runtime`` once at import and the planner asks it for backends, the profile, and a
way to wrap nodes as arrays (decompositions are written with oxcore ops).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .._errors import OxcoreError


@dataclass(frozen=True)
class Runtime:
    """The runtime's handles, as planning uses them.

    Attributes:
        plugins: ``plugins()`` -> the loaded plugin manager: ``.backends`` (name -> Backend),
            ``.available(backend) -> (ok, reason)``, ``.available_backends()``, ``.device(name)``,
            ``.epoch`` (changes whenever what is registered changes).
        profile: ``profile()`` -> the active autotune profile, or None.
        profile_epoch: ``profile_epoch()`` -> an int that changes when the active profile does.
        wrap: ``wrap(node)`` -> an ``Array`` handle on a graph node.
    """

    plugins: Callable[[], Any]
    profile: Callable[[], Any]
    profile_epoch: Callable[[], int]
    wrap: Callable[[Any], Any]


_RUNTIME: Runtime | None = None


def install_runtime(runtime: Runtime) -> None:
    """Hand planning its runtime (``oxcore._runtime`` does this when oxcore is imported)."""
    global _RUNTIME
    _RUNTIME = runtime


def runtime() -> Runtime:
    """The installed runtime; raises when ``oxcore`` itself was never imported."""
    if _RUNTIME is None:
        raise OxcoreError("oxcore's runtime is not installed: import oxcore before planning")
    return _RUNTIME
