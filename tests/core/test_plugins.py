"""Plugin loading through real entry points: a temporary distribution (``*.dist-info`` with
METADATA and entry_points.txt, plus its module) on sys.path, broken and mismatched plugins,
OXCORE_LOAD_PLUGINS / OXCORE_DISABLE_PLUGINS. Every test restores the plugin state."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import oxcore as ox
from oxcore.extend import PLUGIN_API, REGISTRY, manager, reload_plugins
from oxcore.testing import assert_close

GOOD = """
import numpy as np
import oxcore
from oxcore.extend import Backend, Category, same_as_input

OXCORE_PLUGIN_API = {api}


@oxcore.hookimpl
def oxcore_register_ops(register):
    register("oxtest_halve", Category.UNARY, same_as_input, decompose=lambda x: x * 0.5, doc="x / 2")


@oxcore.hookimpl
def oxcore_register_backends(register):
    class OxTest(Backend):
        name = "oxtest"
        priority = -5

    b = OxTest()
    b.kernel("add")(np.add)
    b.kernel("multiply")(np.multiply)
    register(b)
"""


def make_dist(root: Path, dist: str, module: str, source: str, ep_name: str, version: str = "0.1") -> None:
    """Write ``module.py`` and ``dist-version.dist-info/`` (METADATA, entry_points.txt) under root."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[oxcore]\n{ep_name} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch, restore_plugins):
    """A directory on sys.path for temporary distributions; modules and ops are forgotten after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for m in set(sys.modules) - before:
        if m.startswith("oxtest"):
            del sys.modules[m]
    REGISTRY.ops.pop("oxtest_halve", None)
    importlib.invalidate_caches()


def _load(monkeypatch=None):
    importlib.invalidate_caches()
    return reload_plugins()


def test_entry_point_distribution_is_discovered_and_runs(site):
    make_dist(site, "oxtest-plugin", "oxtest_plugin", GOOD.format(api=PLUGIN_API), "oxtest")
    m = _load()
    info = m.plugins["oxtest"]
    assert info.status == "loaded", info.reason
    assert (info.distribution, info.version, info.module) == ("oxtest-plugin", "0.1", "oxtest_plugin")
    assert {"backend:oxtest", "op:oxtest_halve"} <= set(info.registered)
    assert "oxtest" in ox.backends() and m.backend("oxtest").distribution == "oxtest-plugin"
    a = np.random.default_rng().uniform(-2, 2, (3, 4)).astype(np.float32)
    with ox.use("oxtest"):
        y = ox.asarray(a) * 3 + 1
        h = ox.build("oxtest_halve", ox.asarray(a))  # the plugin's op, by its decomposition
    assert ox.explain(y).backends == ["oxtest", "oxtest"]
    assert ox.explain(h).backends == ["oxtest"] and ox.explain(h).plan.decomposed == 1
    assert_close(y, a.astype(np.float64) * 3 + 1, ox.float32)
    assert_close(h, a.astype(np.float64) / 2, ox.float32)


def test_coverage_is_recomputed_after_reload(site):
    from oxcore.coverage import coverage
    import shutil

    make_dist(site, "oxtest-plugin", "oxtest_plugin", GOOD.format(api=PLUGIN_API), "oxtest")
    _load()
    cov = coverage("oxtest")
    assert {"add", "multiply"} <= set(cov["native"]) and "square" in cov["decomposed"]
    assert "oxtest_halve" in cov["missing"]  # NOTE: no conformance case, so no sample to plan
    shutil.rmtree(next(site.glob("oxtest_plugin-*.dist-info")))
    make_dist(site, "oxtest-plugin", "oxtest_plugin2", GOOD.format(api=PLUGIN_API).replace(
        '    b.kernel("multiply")(np.multiply)\n', ""), "oxtest", version="0.2")
    m = _load()
    assert m.backend("oxtest").version == "0.2"
    cov = coverage("oxtest")
    assert "multiply" not in cov["native"], "coverage answered from the previous plugin set"
    assert "add" in cov["native"]


def test_broken_plugin_is_listed_failed_and_the_core_still_works(site):
    make_dist(site, "oxtest-broken", "oxtest_broken", "import oxtest_no_such_module\n", "oxtest_broken")
    make_dist(site, "oxtest-raises", "oxtest_raises", """
        import oxcore
        OXCORE_PLUGIN_API = %d

        @oxcore.hookimpl
        def oxcore_register_backends(register):
            raise RuntimeError("no device here")
        """ % PLUGIN_API, "oxtest_raises")
    m = _load()
    broken, raises = m.plugins["oxtest_broken"], m.plugins["oxtest_raises"]
    assert broken.status == "failed" and "import failed: ModuleNotFoundError" in broken.reason
    assert "oxtest_no_such_module" in broken.reason
    assert raises.status == "failed" and "oxcore_register_backends raised RuntimeError: no device here" in raises.reason
    assert m.plugins["cpu_numpy"].status == "loaded"
    a = np.arange(4.0, dtype=np.float32)
    assert_close(ox.asarray(a) + 1, a.astype(np.float64) + 1, ox.float32)


def test_api_version_mismatch_names_both_versions(site):
    make_dist(site, "oxtest-future", "oxtest_future", GOOD.format(api=PLUGIN_API + 98), "oxtest_future")
    m = _load()
    info = m.plugins["oxtest_future"]
    assert info.status == "failed"
    assert f"plugin API {PLUGIN_API + 98}" in info.reason and f"speaks plugin API {PLUGIN_API}" in info.reason
    assert "oxtest" not in m.backends and info.api == PLUGIN_API + 98


def test_load_and_disable_plugins_env(site, monkeypatch):
    make_dist(site, "oxtest-plugin", "oxtest_plugin", GOOD.format(api=PLUGIN_API), "oxtest")
    monkeypatch.setenv("OXCORE_LOAD_PLUGINS", "oxtest")
    m = _load()
    assert m.plugins["oxtest"].status == "loaded"
    assert m.plugins["cpu_numpy"].status == "disabled" and "OXCORE_LOAD_PLUGINS" in m.plugins["cpu_numpy"].reason
    assert ox.backends() == ["oxtest"]

    monkeypatch.setenv("OXCORE_LOAD_PLUGINS", "")  # builtin only
    m = _load()
    assert ox.backends() == [] and m.plugins["formats"].status == "loaded"
    with pytest.raises(ox.OpNotSupportedError, match="none installed"):
        ox.sin(ox.asarray(np.ones(2, np.float32))).eval()

    monkeypatch.delenv("OXCORE_LOAD_PLUGINS")
    monkeypatch.setenv("OXCORE_DISABLE_PLUGINS", "oxtest")
    m = _load()
    assert m.plugins["oxtest"].status == "disabled" and "OXCORE_DISABLE_PLUGINS" in m.plugins["oxtest"].reason
    assert "oxtest" not in ox.backends() and "cpu_numpy" in ox.backends()


def test_inline_plugin_register_and_unregister(restore_plugins):
    from .conftest import inline_plugin, make_fake_backend, FakeDevice

    with inline_plugin("inline_fake", oxcore_register_backends=lambda register: register(
            make_fake_backend(FakeDevice()))) as info:
        assert "fake" in ox.backends() and info.registered == ["backend:fake"]
        assert manager().plugins["inline_fake"].distribution == "inline"
    assert "fake" not in ox.backends() and "inline_fake" not in manager().plugins
