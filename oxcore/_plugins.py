"""Plugin loading through entry points (group ``oxcore``) and pluggy.

Every plugin, the embedded NumPy backend included, comes through the same door. Loading is
lazy and in two stages: importing the entry-point modules (cheap: ``oxcore --help`` needs only
this, for the commands plugins add), then collecting what they register (first eval or
listing; backend factories run here). Each plugin is in its own ``try``: a broken plugin is
recorded with its reason and never breaks the core.
"""

from __future__ import annotations

import importlib.metadata as md
import itertools
import os
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

import pluggy

from . import hookspecs
from ._backend import Backend, Kernel
from ._device import HOST, Device
from ._errors import PluginError, UnknownNameError
from ._osutil import env_list

#: The plugin API this oxcore speaks. Plugins declare ``OXCORE_PLUGIN_API`` in their module.
PLUGIN_API = 1
#: older plugin API versions still loaded through a compatibility layer: version -> the notice
#: (until when, what to change). Empty while API 1 is the only version (docs/plugins/versioning.md).
DEPRECATED_PLUGIN_APIS: dict[int, str] = {}
#: seconds a plugin module may take to import before it is listed as failed
IMPORT_TIMEOUT_S = 30.0
ENTRY_POINT_GROUP = "oxcore"
BUILTIN = ("oxcore.formats",)  # modules in the core that are plugins too

hookimpl = pluggy.HookimplMarker("oxcore")
# NOTE: epochs are unique across managers: caches keyed on them (coverage, plans) must not
# mistake a reloaded plugin set for the previous one
_EPOCHS = itertools.count(1)


@dataclass
class PluginInfo:
    """What ``oxcore plugins list`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    module: str
    status: str = "loaded"  # loaded | failed | disabled
    reason: str = ""
    api: int | None = None
    hooks: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class PluginManager:
    """Holds the loaded plugins and what they registered. One per process: ``manager()``."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("oxcore")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.backends: dict[str, Backend] = {}
        self.devices: dict[str, Device] = {HOST.name: HOST}
        self.formats: dict[str, Any] = {}
        self.orphan_kernels: list[Kernel] = []
        self.kernel_errors: list[str] = []
        self.epoch = 0  # bumped whenever what is registered changes: plan caches key on it
        self._imported = False
        self._loaded = False
        self._lock = threading.RLock()
        self._available: dict[str, tuple[bool, str]] = {}

    # --- loading ----------------------------------------------------------------------
    def load(self) -> "PluginManager":
        """Import the plugins (``import_plugins``) and collect what they register."""
        if self._loaded:
            return self
        with self._lock:
            if self._loaded:
                return self
            self.import_plugins()
            self._loaded = True
            self._collect()
            self.epoch = next(_EPOCHS)
        return self

    def import_plugins(self) -> "PluginManager":
        """Import every allowed entry point and register it with pluggy; call no hook yet."""
        if self._imported:
            return self
        with self._lock:
            if self._imported:
                return self
            self._imported = True
            for mod_name in BUILTIN:
                import importlib

                self._add(mod_name.rsplit(".", 1)[-1], importlib.import_module(mod_name), "oxcore", _version("oxcore"))
            allow, deny = env_list("OXCORE_LOAD_PLUGINS"), env_list("OXCORE_DISABLE_PLUGINS") or []
            for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                if ep.name in self.plugins:
                    continue
                dist = ep.dist.name if ep.dist else "?"
                ver = ep.dist.version if ep.dist else "?"
                if (allow is not None and ep.name not in allow) or ep.name in deny:
                    why = "OXCORE_DISABLE_PLUGINS" if ep.name in deny else "not in OXCORE_LOAD_PLUGINS"
                    self.plugins[ep.name] = PluginInfo(ep.name, dist, ver, ep.value, "disabled", f"disabled by {why}")
                    continue
                try:
                    module = _load_entry_point(ep)
                except Exception as e:
                    self.plugins[ep.name] = PluginInfo(ep.name, dist, ver, ep.value, "failed",
                                                       f"import failed: {type(e).__name__}: {e}")
                    continue
                self._add(ep.name, module, dist, ver)
        return self

    def _add(self, name: str, module: ModuleType, dist: str, version: str) -> None:
        info = PluginInfo(name, dist, version, getattr(module, "__name__", str(module)))
        api = getattr(module, "OXCORE_PLUGIN_API", None)
        info.api = api
        self.plugins[name] = info
        if api != PLUGIN_API and api in DEPRECATED_PLUGIN_APIS:
            info.reason = _deprecated(info, api)
        elif api != PLUGIN_API:
            info.status = "failed"
            info.reason = (f"plugin {name!r} ({dist} {version}) was built for plugin API {api}, "
                           f"but this oxcore speaks plugin API {PLUGIN_API}"
                           if api is not None else
                           f"plugin {name!r} does not declare OXCORE_PLUGIN_API (this oxcore speaks {PLUGIN_API})")
            return
        try:
            self.pm.register(module, name=name)
        except Exception as e:  # pluggy validates hook signatures here
            info.status, info.reason = "failed", f"pluggy refused it: {e}"
            return
        info.hooks = [h.name for h in self.pm.get_hookcallers(module) or []]

    def register_plugin(self, module: Any, name: str, dist: str = "inline", version: str = "0") -> PluginInfo:
        """Register a plugin object at run time (tests, notebooks). Re-collects registrations."""
        with self._lock:
            self.load()
            self._add(name, module, dist, version)
            self._collect()
            self.epoch = next(_EPOCHS)
            return self.plugins[name]

    def unregister_plugin(self, name: str) -> None:
        with self._lock:
            p = self.pm.get_plugin(name)
            if p is not None:
                self.pm.unregister(p)
            self.plugins.pop(name, None)
            self._collect()
            self.epoch = next(_EPOCHS)

    def call_each(self, hook: str, make_register: Callable[[PluginInfo], Callable] | None = None,
                  **kw: Any) -> None:
        """Call one hook plugin by plugin, so one plugin's failure is only its own (it is marked
        failed, with the reason). Arguments not in ``kw`` get ``make_register(plugin info)``."""
        caller = getattr(self.pm.hook, hook)
        for impl in reversed(caller.get_hookimpls()):  # NOTE: pluggy's call order (tryfirst ... trylast)
            info = self.plugins.get(impl.plugin_name)
            if info is None or info.status != "loaded":
                continue
            try:
                impl.function(**{a: kw[a] if a in kw else make_register(info) for a in impl.argnames})
            except Exception as e:
                info.status = "failed"
                info.reason = f"{hook} raised {type(e).__name__}: {e}"
                info.registered.clear()
                self._drop_from(info)
                _debug(traceback.format_exc())

    def _drop_from(self, info: PluginInfo) -> None:
        for n in [n for n, b in self.backends.items() if b.distribution == info.distribution and info.distribution != "oxcore"]:
            del self.backends[n]
        for n in [n for n, f in self.formats.items() if getattr(f, "_oxcore_plugin", None) == info.name]:
            del self.formats[n]

    def _collect(self) -> None:
        from ._registry import REGISTRY, register_op

        self.backends.clear()
        self.formats.clear()
        self.orphan_kernels.clear()
        self._available.clear()

        ops_now: dict[str, str] = {}  # NOTE: op -> plugin that registered it in this collection

        def reg_op(info):
            def register(name, *a, **k):
                if name in ops_now:
                    raise PluginError(f"op {name!r} is registered twice (already by plugin {ops_now[name]!r})")
                ops_now[name] = info.name
                _HOOK_OPS[name] = info.distribution
                if name in REGISTRY.ops and REGISTRY.ops[name].source == info.distribution:
                    info.registered.append(f"op:{name}")
                    return REGISTRY.ops[name]
                op = register_op(name, *a, source=info.distribution, **k)
                info.registered.append(f"op:{name}")
                return op
            return register

        def reg_backend(info):
            def register(b: Backend) -> None:
                if not isinstance(b, Backend):
                    raise PluginError(f"register() expects an oxcore Backend, got {type(b).__name__}")
                if b.name in self.backends:
                    raise PluginError(f"backend {b.name!r} is already registered by {self.backends[b.name].distribution}")
                _drop_foreign_kernels(b)
                b.distribution, b.version = b.distribution or info.distribution, b.version or info.version
                for ks in b.kernels.values():
                    for k in ks:
                        k.source, k.version = k.source or info.distribution, k.version or info.version
                self.backends[b.name] = b
                self.devices.setdefault(b.device.name, b.device)
                info.registered.append(f"backend:{b.name}")
            return register

        pending: list[tuple[PluginInfo, Kernel]] = []

        def reg_kernel(info):
            def register(k: Kernel) -> None:
                if not isinstance(k, Kernel):
                    raise PluginError(f"register() expects an oxcore Kernel, got {type(k).__name__}")
                k.source, k.version = k.source or info.distribution, k.version or info.version
                clash = next((i.name for i, p in pending if p.id == k.id), None)
                if clash is not None:
                    raise PluginError(f"kernel {k.id!r} is registered twice (already by plugin {clash!r})")
                pending.append((info, k))
                info.registered.append(f"kernel:{k.id}")
            return register

        def reg_format(info):
            def register(f: Any) -> None:
                old = self.formats.get(f.name)
                if old is not None:
                    why = f"format {f.name!r} is already registered by "
                    owner = self.plugins.get(getattr(old, "_oxcore_plugin", ""))
                    if info.distribution != "oxcore" or owner is None:
                        raise PluginError(why + getattr(old, "distribution", "?"))
                    # NOTE: the core's builtin formats run last (trylast) yet own their names
                    owner.status, owner.reason = "failed", f"oxcore_register_formats raised PluginError: {why}oxcore"
                    owner.registered.clear()
                    self._drop_from(owner)
                self.formats[f.name] = f
                f._oxcore_plugin = info.name
                f.distribution = getattr(f, "distribution", "") or info.distribution
                info.registered.append(f"format:{f.name}")
            return register

        self.call_each("oxcore_register_ops", reg_op)
        self.call_each("oxcore_register_backends", reg_backend)
        self.call_each("oxcore_register_kernels", reg_kernel)
        self.call_each("oxcore_register_formats", reg_format)
        pending = [(i, k) for i, k in pending if i.status == "loaded"]  # NOTE: a failed plugin leaves nothing
        _prune_ops(self, ops_now)
        for info, k in pending:
            b = self.backends.get(k.backend)
            if b is None:
                self.orphan_kernels.append(k)
            else:
                k._oxcore_foreign = True  # NOTE: see _drop_foreign_kernels
                b.add_kernel(k)

    # --- queries -------------------------------------------------------------------------
    def backend(self, name: str) -> Backend:
        self.load()
        if name not in self.backends:
            raise UnknownNameError(f"Unknown backend {name!r}. Installed backends: "
                                   f"{', '.join(self.backends) or '(none)'}")
        return self.backends[name]

    def device(self, name: str) -> Device:
        self.load()
        if name not in self.devices:
            raise UnknownNameError(f"Unknown device {name!r}. Known devices: {', '.join(self.devices)}")
        return self.devices[name]

    def available(self, b: Backend) -> tuple[bool, str]:
        r = self._available.get(b.name)
        if r is None:
            try:
                r = b.available()
            except Exception as e:
                r = (False, f"available() raised {type(e).__name__}: {e}")
            self._available[b.name] = r
        return r

    def available_backends(self) -> list[Backend]:
        self.load()
        return [b for b in self.backends.values() if self.available(b)[0]]


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "0+unknown"


def _debug(msg: str) -> None:
    if "plugins" in os.environ.get("OXCORE_LOG", ""):
        import sys

        print(msg, file=sys.stderr)


_MANAGER: PluginManager | None = None
_MLOCK = threading.Lock()


def manager(collect: bool = True) -> PluginManager:
    """The process-wide plugin manager (plugins load on first use). ``collect=False``: only
    imported, no hook called yet (what the CLI needs to list commands)."""
    global _MANAGER
    if _MANAGER is None:
        with _MLOCK:
            if _MANAGER is None:
                _MANAGER = PluginManager()
    return _MANAGER.load() if collect else _MANAGER.import_plugins()


def reload_plugins() -> PluginManager:
    """Forget everything loaded and load again (after installing a plugin in-process)."""
    global _MANAGER
    with _MLOCK:
        _MANAGER = PluginManager()
    from ._plan import clear_cache

    clear_cache()
    return manager()


# --- isolation helpers ---------------------------------------------------------------------------
#: ops registered through ``oxcore_register_ops``: name -> distribution (the rest are the core's
#: or the user's own ``register_op`` calls, which reloads never touch)
_HOOK_OPS: dict[str, str] = {}


def _prune_ops(m: PluginManager, ops_now: dict[str, str]) -> None:
    """Forget ops that plugins registered before but no loaded plugin registered this time."""
    from ._registry import REGISTRY

    for name in [n for n in _HOOK_OPS if ops_now.get(n) is None or m.plugins[ops_now[n]].status != "loaded"]:
        op = REGISTRY.ops.get(name)
        if op is not None and op.source == _HOOK_OPS[name]:
            with REGISTRY._lock:
                REGISTRY.ops.pop(name, None)
        del _HOOK_OPS[name]


def _drop_foreign_kernels(b: Backend) -> None:
    """A backend object registered again (a module-level instance) loses the kernels other
    plugins added last time; the ones still loaded add theirs again."""
    for op, ks in list(b.kernels.items()):
        ks[:] = [k for k in ks if not getattr(k, "_oxcore_foreign", False)]
        if not ks:
            del b.kernels[op]


def _load_entry_point(ep: Any) -> Any:
    """``ep.load()`` with a time limit: a plugin whose import hangs is listed as failed."""
    import sys

    parts = ep.module.split(".")
    for i in range(1, len(parts) + 1):
        mod = sys.modules.get(".".join(parts[:i]))
        if mod is not None and getattr(getattr(mod, "__spec__", None), "_initializing", False):
            # NOTE: this thread is importing it right now (a plugin module that evaluates at import):
            # another thread would wait for that import, and this one for the other thread
            return ep.load()
    limit = float(os.environ.get("OXCORE_PLUGIN_IMPORT_TIMEOUT", IMPORT_TIMEOUT_S))
    out: list[Any] = []

    def run() -> None:
        try:
            out.append((True, ep.load()))
        except BaseException as e:  # NOTE: re-raised in the loading thread below
            out.append((False, e))

    # NOTE: a daemon thread: a hung import cannot be stopped, but it must not keep the process alive
    t = threading.Thread(target=run, name=f"oxcore-import-{ep.name}", daemon=True)
    t.start()
    t.join(limit)
    if not out:
        raise TimeoutError(f"importing {ep.value} did not finish within {limit:g} s "
                           "(OXCORE_PLUGIN_IMPORT_TIMEOUT); it may hang at import")
    ok, v = out[0]
    if not ok:
        raise v
    return v


def _deprecated(info: PluginInfo, api: int) -> str:
    why = (f"deprecated: plugin {info.name!r} ({info.distribution} {info.version}) was built for plugin API {api}; "
           f"this oxcore speaks {PLUGIN_API} and still loads API {api} plugins: {DEPRECATED_PLUGIN_APIS[api]}")
    warnings.warn(why, DeprecationWarning, stacklevel=4)
    return why
