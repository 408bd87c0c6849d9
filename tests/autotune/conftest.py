"""Fixtures for the autotune tests: a temp profile, a plugin set reduced to cpu_numpy plus
inline test backends, and a fake accelerator device whose memory really is separate (copies).

Every fixture that changes plugins restores them with ``reload_plugins()`` afterwards.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from typing import Any, Iterator

import numpy as np
import pytest

import oxcore as ox
from oxcore import _profile
from oxcore.extend import Backend, Device, hookimpl, manager, reload_plugins

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")


@contextlib.contextmanager
def environ(**kv: str | None) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in kv}
    for k, v in kv.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture
def tmp_profile(tmp_path) -> Iterator[Any]:
    """``OXCORE_PROFILE`` pointing at an empty temp file path; yields the path."""
    path = tmp_path / "profile.json"
    with environ(OXCORE_PROFILE=str(path)):
        _profile.reload()
        yield path
    _profile.reload()


@pytest.fixture
def numpy_only() -> Iterator[Any]:
    """Only cpu_numpy is loaded (whatever else is installed); plugins restored afterwards."""
    with environ(OXCORE_LOAD_PLUGINS="cpu_numpy", OXCORE_BACKENDS=None):
        reload_plugins()
        try:
            yield manager()
        finally:
            pass
    reload_plugins()


class AccelDevice(Device):
    """A pretend accelerator: buffers are copies, so every transfer really moves data."""

    def __init__(self) -> None:
        super().__init__("accel:0", "gpu", "pretend accelerator (tests)")

    def from_numpy(self, array: np.ndarray) -> Any:
        return np.array(array, copy=True)

    def to_numpy(self, buffer: Any) -> np.ndarray:
        return np.array(buffer, copy=True)


ACCEL = AccelDevice()


def make_accel() -> Backend:
    """Backend ``accel`` on ``accel:0``: exp, multiply and rope, but no add (so chains must come back)."""

    class Accel(Backend):
        name = "accel"
        device = ACCEL
        priority = -1

    b = Accel()
    b.kernel("exp")(np.exp)
    b.kernel("multiply")(np.multiply)

    def rope(x, offset, *, dims, traditional, base, scale):  # NOTE: correctness is not the point here
        return np.array(x, copy=True)
    b.kernel("rope")(rope)
    return b


def register(name: str, **hooks: Any) -> types.ModuleType:
    """Register an inline plugin module with the given hook functions."""
    mod = types.ModuleType(name)
    mod.OXCORE_PLUGIN_API = 1
    for hook, fn in hooks.items():
        setattr(mod, hook, hookimpl(fn))
    manager().register_plugin(mod, name, dist=f"{name}-dist", version="1.0")
    return mod


@pytest.fixture
def accel(numpy_only) -> Iterator[Backend]:
    """cpu_numpy plus the inline ``accel`` backend."""
    register("accel_plugin", oxcore_register_backends=lambda register: register(make_accel()))
    yield manager().backends["accel"]


def synth(profile: Any, out: Any, table: dict[tuple[str, str], float]) -> None:
    """Fill ``profile`` with made-up times: ``{(op, kernel id or backend name): us}`` for every
    node of ``out``'s graph with that op (the real Profile keys and buckets are used)."""
    m = manager()
    for p in ox.explain(out).nodes:
        for (op, who), us in table.items():
            if p.op != op:
                continue
            for b in m.backends.values():
                for k in b.kernels_for(op):
                    if who in (b.name, k.id):
                        profile.add(k, p, us)
                if who == f"{b.name}.{op}.decomposed":
                    profile.add(_profile.DecomposedKernel(op, b.name), p, us, device=b.device)


def write_dist_info(root: str, name: str, version: str, entry_points: str) -> str:
    """A minimal ``<name>-<version>.dist-info`` under ``root`` (what pip would write)."""
    d = os.path.join(root, f"{name.replace('-', '_')}-{version}.dist-info")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "METADATA"), "w") as f:
        f.write(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    with open(os.path.join(d, "entry_points.txt"), "w") as f:
        f.write(entry_points)
    return d


@contextlib.contextmanager
def installed_fastnorm(tmp: str, version: str = "0.1.0") -> Iterator[None]:
    """Make the fixture distribution ``oxcore-fastnorm`` importable and discoverable."""
    import importlib

    write_dist_info(tmp, "oxcore-fastnorm", version, "[oxcore]\nfastnorm = oxcore_fastnorm\n")
    src = os.path.join(FIXTURES, "oxcore_fastnorm")
    sys.path[:0] = [tmp, src]
    importlib.invalidate_caches()
    try:
        with environ(OXCORE_LOAD_PLUGINS="cpu_numpy,fastnorm", OXCORE_BACKENDS=None):
            reload_plugins()
            yield
    finally:
        sys.path[:] = [p for p in sys.path if p not in (tmp, src)]
        importlib.invalidate_caches()
        reload_plugins()
