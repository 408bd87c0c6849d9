"""The runtime: the top of the core, where the layers are wired together once, at import.

Lower layers never import upward. Instead the runtime hands each the objects it needs:
planning gets the plugin manager, the active profile and a way to wrap nodes as arrays;
``Array``'s operators get the op functions; the op registry gets a loader for ops it does not
know yet (a plugin may declare them).
"""

from __future__ import annotations

from types import ModuleType

from . import _array, _plan, _profile, ops
from ._plugins import manager
from ._registry import REGISTRY


def _load_plugins_for(op: str) -> None:
    manager()  # NOTE: loading the plugins registers their ops; the registry looks again


def install(namespace: ModuleType) -> None:
    """Wire the layers (idempotent); ``namespace`` is the ``oxcore`` package (the Array API
    namespace arrays report)."""
    _plan.install_runtime(_plan.Runtime(plugins=manager, profile=_profile.current, profile_epoch=_profile.epoch,
                                        wrap=_array.Array._wrap))
    _array.use_ops(ops, namespace)
    REGISTRY.on_unknown = _load_plugins_for

