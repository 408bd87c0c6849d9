"""Fixtures for core tests: inline plugins (registered, then unregistered in ``finally``), a fake
second backend on its own device, and plugin-state restoration."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import pytest

import oxcore as ox
from oxcore.extend import PLUGIN_API, Backend, Device, hookimpl, manager, reload_plugins


@contextlib.contextmanager
def inline_plugin(name: str, **hooks: Any) -> Iterator[Any]:
    """Register an object implementing ``hooks`` as plugin ``name``; unregister on exit."""
    plugin = type(f"Plugin_{name}", (), {"OXCORE_PLUGIN_API": PLUGIN_API})()
    for hook, fn in hooks.items():
        setattr(plugin, hook, hookimpl(fn))
    info = manager().register_plugin(plugin, name)
    try:
        assert info.status == "loaded", info.reason
        yield info
    finally:
        manager().unregister_plugin(name)


class FakeBuf:
    """A buffer of the fake device: host memory behind a wrapper, so a missed transfer shows."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a

    @property
    def shape(self) -> tuple[int, ...]:
        return self.a.shape


class FakeDevice(Device):
    def __init__(self) -> None:
        super().__init__("fake:mem", "cpu", "a second memory space for tests")
        self.moves = 0

    def from_numpy(self, array: np.ndarray) -> FakeBuf:
        self.moves += 1
        return FakeBuf(np.array(array, copy=True))

    def to_numpy(self, buffer: Any) -> np.ndarray:
        assert isinstance(buffer, FakeBuf), f"fake device got a foreign buffer {type(buffer).__name__}"
        self.moves += 1
        return buffer.a


def _wrap(f):
    def k(*xs, **attrs):
        for x in xs:
            assert isinstance(x, FakeBuf), f"kernel received a {type(x).__name__}: a transfer is missing"
        return FakeBuf(np.asarray(f(*(x.a for x in xs), **attrs)))
    return k


def _no_float64(node: Any) -> bool | str:
    if any(i.dtype is ox.float64 for i in (node, *node.inputs)):
        return "fake has no float64"
    return True


def make_fake_backend(device: FakeDevice) -> Backend:
    class Fake(Backend):
        name = "fake"
        priority = 5

    Fake.device = device
    b = Fake()
    for op, f in {"add": np.add, "multiply": np.multiply, "exp": np.exp, "subtract": np.subtract,
                  "reshape": lambda x, *, shape: x.reshape(shape)}.items():
        b.kernel(op, supports=_no_float64)(_wrap(f))
    return b


@pytest.fixture
def fake_backend() -> Iterator[FakeDevice]:
    """Backend ``fake`` on device ``fake:mem`` with add/multiply/subtract/exp/reshape (no float64)."""
    dev = FakeDevice()
    with inline_plugin("fake_plugin", oxcore_register_backends=lambda register: register(make_fake_backend(dev))):
        yield dev


@pytest.fixture
def restore_plugins() -> Iterator[None]:
    """Reload the plugins after the test (it changed sys.path, the environment or the manager)."""
    try:
        yield
    finally:
        reload_plugins()
