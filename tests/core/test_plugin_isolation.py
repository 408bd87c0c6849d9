"""Plugin isolation: reloads forget what removed plugins registered (ops, kernels, formats);
plugins for a deprecated plugin API load with a DeprecationWarning; a plugin whose hook raises,
whose import hangs (time-limited) or that registers a name twice is listed as failed with its
reason, and nothing it registered stays behind. Real entry points (temporary dist-info)."""

from __future__ import annotations

import importlib
import json
import shutil
import time
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import oxcore as ox
from oxcore import _plugins
from oxcore.cli import main
from oxcore.extend import PLUGIN_API, REGISTRY

from . import test_plugins
from .test_plugins import GOOD, _load, make_dist

site = test_plugins.site  # NOTE: the same temporary-distribution fixture as test_plugins.py

KERNEL_AND_FORMAT = """
import numpy as np
import oxcore
from oxcore.extend import Kernel, Format

OXCORE_PLUGIN_API = {api}


class Npy(Format):
    name = "oxtest_npy"
    suffixes = (".oxnpy",)


@oxcore.hookimpl
def oxcore_register_kernels(register):
    register(Kernel("add", "cpu_numpy", lambda a, b: np.add(a, b), name="oxtest_add"))


@oxcore.hookimpl
def oxcore_register_formats(register):
    register(Npy())
"""


def _plugins_json() -> dict:
    return {p["name"]: p for p in json.loads(CliRunner().invoke(main, ["plugins", "list", "--json"]).output)}


def test_reload_forgets_ops_kernels_and_formats_of_removed_plugins(site):
    make_dist(site, "oxtest-plugin", "oxtest_plugin", GOOD.format(api=PLUGIN_API), "oxtest")
    make_dist(site, "oxtest-extra", "oxtest_extra", KERNEL_AND_FORMAT.format(api=PLUGIN_API), "oxtest_extra")
    m = _load()
    assert "oxtest_halve" in REGISTRY and "oxtest_npy" in m.formats
    assert any(k.name == "oxtest_add" for k in m.backend("cpu_numpy").kernels_for("add"))
    a = np.random.default_rng().standard_normal(5).astype(np.float32)
    assert np.array_equal(ox.build("oxtest_halve", ox.asarray(a)).numpy(), a * np.float32(0.5))
    for d in site.glob("oxtest_*.dist-info"):
        shutil.rmtree(d)
    m = _load()
    assert "oxtest_halve" not in REGISTRY and "oxtest_npy" not in m.formats and "oxtest" not in m.backends
    assert not any(k.name == "oxtest_add" for k in m.backend("cpu_numpy").kernels_for("add"))
    with pytest.raises(ox.UnknownNameError, match="Unknown op 'oxtest_halve'"):
        ox.build("oxtest_halve", ox.asarray(a))
    assert np.array_equal((ox.asarray(a) + 1).numpy(), a + 1)


def test_a_reused_backend_object_loses_kernels_of_removed_plugins(site):
    make_dist(site, "oxtest-owner", "oxtest_owner", """
        import numpy as np, oxcore
        from oxcore.extend import Backend
        OXCORE_PLUGIN_API = %d

        class Shared(Backend):
            name = "oxtest_shared"
            priority = -9

        SHARED = Shared()
        SHARED.kernel("add")(np.add)

        @oxcore.hookimpl
        def oxcore_register_backends(register):
            register(SHARED)  # NOTE: the same object at every reload
        """ % PLUGIN_API, "oxtest_owner")
    make_dist(site, "oxtest-kern", "oxtest_kern", """
        import numpy as np, oxcore
        from oxcore.extend import Kernel
        OXCORE_PLUGIN_API = %d

        @oxcore.hookimpl
        def oxcore_register_kernels(register):
            register(Kernel("multiply", "oxtest_shared", np.multiply))
        """ % PLUGIN_API, "oxtest_kern")
    m = _load()
    assert [k.op for k in m.backend("oxtest_shared").kernels_for("multiply")] == ["multiply"]
    shutil.rmtree(next(site.glob("oxtest_kern-*.dist-info")))
    m = _load()
    assert m.backend("oxtest_shared").kernels_for("multiply") in ((), [])
    assert [k.op for k in m.backend("oxtest_shared").kernels_for("add")] == ["add"]


def test_previous_api_loads_with_a_deprecation_warning(site):
    make_dist(site, "oxtest-plugin", "oxtest_plugin", GOOD.format(api=PLUGIN_API), "oxtest")
    make_dist(site, "oxtest-ancient", "oxtest_ancient", GOOD.format(api=PLUGIN_API - 1).replace(
        '"oxtest"', '"oxtest_old"').replace("oxtest_halve", "oxtest_halve_old"), "oxtest_ancient")
    # NOTE: pretend API N+1 is out and N is in its deprecation window (today N is the only one)
    saved = _plugins.PLUGIN_API, _plugins.DEPRECATED_PLUGIN_APIS
    _plugins.PLUGIN_API, _plugins.DEPRECATED_PLUGIN_APIS = PLUGIN_API + 1, {PLUGIN_API: "until oxcore 0.9"}
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            m = _load()
        mine = [w for w in seen if "'oxtest'" in str(w.message)]
        assert len(mine) == 1 and mine[0].category is DeprecationWarning
        assert f"built for plugin API {PLUGIN_API}; this oxcore speaks {PLUGIN_API + 1}" in str(mine[0].message)
        info, old = m.plugins["oxtest"], m.plugins["oxtest_ancient"]
        assert info.status == "loaded" and "until oxcore 0.9" in info.reason and "backend:oxtest" in info.registered
        assert old.status == "failed" and f"built for plugin API {PLUGIN_API - 1}" in old.reason
        a = np.random.default_rng().standard_normal((2, 3)).astype(np.float32)
        with ox.use("oxtest"):
            assert np.array_equal((ox.asarray(a) + ox.asarray(a)).numpy(), a + a)
        listed = _plugins_json()["oxtest"]
        assert listed["status"] == "loaded" and "deprecated" in listed["reason"]
    finally:
        _plugins.PLUGIN_API, _plugins.DEPRECATED_PLUGIN_APIS = saved
        _load()
    assert m.plugins["oxtest"].reason and not _load().plugins["oxtest"].reason


def test_a_hanging_import_is_time_limited(site, monkeypatch):
    monkeypatch.setenv("OXCORE_PLUGIN_IMPORT_TIMEOUT", "0.3")
    make_dist(site, "oxtest-hang", "oxtest_hang", "import time\ntime.sleep(2)\nOXCORE_PLUGIN_API = 1\n", "oxtest_hang")
    make_dist(site, "oxtest-plugin", "oxtest_plugin", GOOD.format(api=PLUGIN_API), "oxtest")
    t0 = time.perf_counter()
    m = _load()
    assert time.perf_counter() - t0 < 1.8
    hang = m.plugins["oxtest_hang"]
    assert hang.status == "failed" and "did not finish within 0.3 s" in hang.reason
    assert m.plugins["oxtest"].status == "loaded" and "oxtest" in ox.backends()
    assert "did not finish" in _plugins_json()["oxtest_hang"]["reason"]


MINE = """
@oxcore.hookimpl
def oxcore_register_ops(register):
    register("oxtest_mine", Category.UNARY, same_as_input, decompose=lambda x: x * 3)
"""

TWICE = {
    "backend": ("""
@oxcore.hookimpl
def oxcore_register_backends(register):
    class B(Backend):
        name = "oxtest_twice"
    register(B())
    register(B())
""", "backend 'oxtest_twice' is already registered"),
    "op": ("""
@oxcore.hookimpl
def oxcore_register_backends(register):
    pass


@oxcore.hookimpl
def oxcore_register_ops(register):
    register("oxtest_mine", Category.UNARY, same_as_input, decompose=lambda x: x * 3)
    register("oxtest_dup", Category.UNARY, same_as_input, decompose=lambda x: x)
    register("oxtest_dup", Category.UNARY, same_as_input, decompose=lambda x: x)
""", "op 'oxtest_dup' is registered twice"),
    "format": ("""
@oxcore.hookimpl
def oxcore_register_formats(register):
    class F(Format):
        name = "safetensors"
        suffixes = (".st2",)
    register(F())
""", "format 'safetensors' is already registered by oxcore"),
    "kernel": ("""
@oxcore.hookimpl
def oxcore_register_kernels(register):
    register(Kernel("add", "cpu_numpy", np.add, name="oxtest_k"))
    register(Kernel("add", "cpu_numpy", np.add, name="oxtest_k"))
""", "kernel 'cpu_numpy.add.oxtest_k' is registered twice"),
}


@pytest.mark.parametrize("what", sorted(TWICE))
def test_registering_a_name_twice_isolates_the_plugin(site, what):
    body, why = TWICE[what]
    src = ("import numpy as np\nimport oxcore\n"
           "from oxcore.extend import Backend, Category, Format, Kernel, same_as_input\n"
           f"OXCORE_PLUGIN_API = {PLUGIN_API}\n" + ("" if what == "op" else MINE) + body)
    # NOTE: one module name per case: the site fixture's reload may re-import the previous one
    make_dist(site, "oxtest-twice", f"oxtest_twice_{what}", src, "oxtest_twice")
    make_dist(site, "oxtest-plugin", "oxtest_plugin", GOOD.format(api=PLUGIN_API), "oxtest")
    m = _load()
    info = m.plugins["oxtest_twice"]
    assert info.status == "failed" and why in info.reason, info.reason
    # NOTE: nothing of the failed plugin stays: not its op from the other hook, not its names
    assert "oxtest_mine" not in REGISTRY and "oxtest_dup" not in REGISTRY and "oxtest_twice" not in m.backends
    assert not any(k.name == "oxtest_k" for k in m.backend("cpu_numpy").kernels_for("add"))
    assert type(m.formats["safetensors"]).__module__ == "oxcore.formats.safetensors"
    assert m.plugins["oxtest"].status == "loaded"
    a = np.random.default_rng().standard_normal(4).astype(np.float32)
    assert np.array_equal(ox.build("oxtest_halve", ox.asarray(a)).numpy(), a * np.float32(0.5))
    assert why in _plugins_json()["oxtest_twice"]["reason"]


def test_a_plugin_that_evaluates_at_import_is_not_mistaken_for_a_hang(site, monkeypatch):
    # NOTE: importing it loads the plugins (an eval at import), which must not wait on itself
    monkeypatch.setenv("OXCORE_PLUGIN_IMPORT_TIMEOUT", "3")
    make_dist(site, "oxtest-selfload", "oxtest_selfload", f"""
import numpy as np
import oxcore
from oxcore.extend import reload_plugins
OXCORE_PLUGIN_API = {PLUGIN_API}
reload_plugins()
VALUE = (oxcore.asarray(np.arange(3)) + 1).tolist()
""", "oxtest_selfload")
    importlib.invalidate_caches()
    t0 = time.perf_counter()
    mod = importlib.import_module("oxtest_selfload")
    assert time.perf_counter() - t0 < 2.5 and mod.VALUE == [1, 2, 3]
    info = ox.extend.manager().plugins["oxtest_selfload"]
    assert info.status == "loaded", info.reason
