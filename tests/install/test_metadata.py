"""The six distributions' metadata: one version (oxcore/VERSION), compatible ranges between
them that contain it, and extras that give each platform an MLX with a compute backend."""

from __future__ import annotations

import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

import oxcore

ROOT = Path(__file__).resolve().parents[2]
VERSION = (ROOT / "oxcore" / "VERSION").read_text().strip()
PROJECTS = {tomllib.loads(p.read_text())["project"]["name"]: p.parent
            for p in [ROOT / "pyproject.toml", *sorted(ROOT.glob("plugins/*/pyproject.toml"))]}
OURS = set(PROJECTS)
LINUX = {**default_environment(), "platform_system": "Linux", "sys_platform": "linux"}
MACOS = {**default_environment(), "platform_system": "Darwin", "sys_platform": "darwin"}


def _project(dist: str) -> dict:
    return tomllib.loads((PROJECTS[dist] / "pyproject.toml").read_text())


def _requirements(dist: str) -> dict[str, list[Requirement]]:
    """"" -> dependencies, extra -> its requirements."""
    p = _project(dist)["project"]
    return {"": [Requirement(r) for r in p.get("dependencies", [])],
            **{k: [Requirement(r) for r in v] for k, v in p.get("optional-dependencies", {}).items()}}


def _resolve_extra(dist: str, extra: str, env: dict) -> list[Requirement]:
    """The requirements an extra adds on this platform, following ``oxcore[metal,gguf]``-style self-references."""
    out = []
    for r in _requirements(dist)[extra]:
        if r.marker and not r.marker.evaluate({**env, "extra": extra}):
            continue
        if r.name == dist:
            out += [x for e in sorted(r.extras) for x in _resolve_extra(dist, e, env)]
        else:
            out.append(r)
    return out


def test_seven_distributions_and_one_version():
    assert OURS == {"oxcore", "oxcore-cpu-numpy", "oxcore-metal-basic", "oxcore-metal-fused", "oxcore-io-gguf",
                    "oxcore-models", "oxcore-kernels-ggml"}
    assert Version(VERSION) and oxcore.__version__ == VERSION
    for dist, folder in PROJECTS.items():
        p = _project(dist)
        assert "version" not in p["project"] and p["project"]["dynamic"] == ["version"], dist
        file = p["tool"]["setuptools"]["dynamic"]["version"]["file"]
        assert (folder / file).resolve() == (ROOT / "oxcore" / "VERSION").resolve(), (dist, file)
        # NOTE: the installed (editable) metadata says the same: `./dev` reinstalls when VERSION changes
        assert md.version(dist) == VERSION, f"{dist} is installed as {md.version(dist)}; VERSION says {VERSION}"


def test_every_pin_between_our_distributions_is_a_range_around_this_version():
    v = Version(VERSION)
    next_minor = Version(f"{v.major}.{v.minor + 1}.0")
    seen = 0
    for dist in OURS:
        for extra, reqs in _requirements(dist).items():
            for r in reqs:
                if r.name not in OURS or r.name == dist:
                    continue
                seen += 1
                where = f"{dist}{f'[{extra}]' if extra else ''} requires {r}"
                assert v in r.specifier and next_minor not in r.specifier, where
                assert not any(s.operator in ("==", "===") for s in r.specifier), f"{where}: pin a range"
    assert seen >= 9  # core -> cpu_numpy, extras -> plugins, every plugin -> core


def test_every_plugin_depends_on_a_compatible_core():
    for dist in OURS - {"oxcore"}:
        assert any(r.name == "oxcore" for r in _requirements(dist)[""]), f"{dist} does not pin oxcore"


@pytest.mark.parametrize("extra, linux_mlx", [("metal", "cpu"), ("cuda", "cuda13"), ("cuda12", "cuda12"),
                                              ("all", "cpu")])
def test_mlx_extras_pick_a_compute_backend_on_linux_and_metal_on_macos(extra, linux_mlx):
    on_linux = {r.name: r for r in _resolve_extra("oxcore", extra, LINUX)}
    on_macos = {r.name: r for r in _resolve_extra("oxcore", extra, MACOS)}
    assert {"oxcore-metal-basic", "oxcore-metal-fused"} <= set(on_macos) and set(on_linux) == set(on_macos) | {"mlx"}
    assert on_linux["mlx"].extras == {linux_mlx}, on_linux["mlx"]
    assert "mlx" not in on_macos  # NOTE: mlx itself (a plugin dependency) brings mlx-metal on macOS
    for plugin in ("oxcore-metal-basic", "oxcore-metal-fused"):
        reqs = _requirements(plugin)
        assert [str(r) for r in reqs[""] if r.name == "mlx"] == ["mlx>=0.32"], plugin
        for plugin_extra in ("cpu", "cuda12", "cuda13"):
            (r,) = reqs[plugin_extra]
            assert (r.name, r.extras) == ("mlx", {plugin_extra}), (plugin, r)
            assert r.marker.evaluate({**LINUX, "extra": plugin_extra})
            assert not r.marker.evaluate({**MACOS, "extra": plugin_extra})


def test_gguf_extra_and_all():
    assert [r.name for r in _resolve_extra("oxcore", "gguf", LINUX)] == ["oxcore-io-gguf"]
    assert {r.name for r in _resolve_extra("oxcore", "all", LINUX)} == (OURS - {"oxcore", "oxcore-cpu-numpy"}) | {"mlx"}


@pytest.mark.skipif(sys.platform != "linux", reason="the Linux MLX extra")
def test_this_linux_environment_has_the_mlx_cpu_backend_the_metal_extra_promises():
    assert md.version("mlx-cpu") == md.version("mlx")


def test_nothing_odd_in_the_repository_root():
    assert not list(ROOT.glob("*.whl")), "wheels do not belong in the repository root"
