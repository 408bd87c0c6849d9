"""``oxcore plugin new``: the generated packages install, load, and pass their tests and the
conformance kit unchanged (in the session's plugin venv), and the command checks its input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

import oxcore as ox
from oxcore.cli import main
from oxcore.cli.plugin_new import KINDS, names

from ._venv import SKELETONS


def _new(tmp_path, *args):
    return CliRunner().invoke(main, ["plugin", "new", *args, "--dir", str(tmp_path)])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_generated_layout(tmp_path, kind):
    r = _new(tmp_path, "my-thing", "--kind", kind)
    assert r.exit_code == 0, r.output
    d = tmp_path / "oxcore-my-thing"
    files = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
    assert files == sorted([".github/workflows/ci.yml", ".gitignore", "README.md", "pyproject.toml",
                            "oxcore_my_thing/__init__.py", "tests/test_my_thing.py"]
                           + (["oxcore_my_thing/_backend.py"] if kind == "backend" else [])), files
    meta = tomllib.loads((d / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "oxcore-my-thing"
    assert meta["project"]["entry-points"]["oxcore"] == {"my_thing": "oxcore_my_thing"}
    ci = yaml.safe_load((d / ".github/workflows/ci.yml").read_text())
    steps = " ".join(s.get("run", "") for s in ci["jobs"]["test"]["steps"])
    assert "pytest tests" in steps and "pytest --oxcore-" in steps and "oxcore plugins list" in steps
    for p in d.rglob("*"):
        if p.is_file():
            text = p.read_text()
            assert not re.search(r"(?<!\$)\{\{\w+\}\}", text), f"unfilled template token in {p}"
            if p.suffix == ".py":
                compile(text, str(p), "exec")
    assert "OXCORE_PLUGIN_API = 1" in (d / "oxcore_my_thing/__init__.py").read_text()
    assert f"pytest {KINDS[kind][1].format(name='my_thing')}" in r.output


def test_names():
    v = names("oxcore-fast-norm")
    assert (v["name"], v["dist"], v["module"], v["class_name"]) == ("fast_norm", "oxcore-fast-norm",
                                                                    "oxcore_fast_norm", "FastNorm")
    assert names("fast_norm") == v


@pytest.mark.parametrize("bad", ["Fast", "1abc", "my.plugin", "a b", "", "oxcore-"])
def test_bad_names_are_refused_with_the_rule(tmp_path, bad):
    r = _new(tmp_path, bad, "--kind", "backend")
    assert r.exit_code == 2 and "not a valid plugin name" in r.output, r.output
    assert not any(tmp_path.iterdir())


def test_unknown_kind_lists_the_valid_ones(tmp_path):
    r = _new(tmp_path, "x", "--kind", "codec")
    assert r.exit_code == 2 and "backend" in r.output and "format" in r.output and "kernels" in r.output


def test_never_overwrites(tmp_path):
    assert _new(tmp_path, "x", "--kind", "format").exit_code == 0
    r = _new(tmp_path, "x", "--kind", "backend")
    assert r.exit_code == 1 and "already exists" in r.output
    assert "Format" in (tmp_path / "oxcore-x/oxcore_x/__init__.py").read_text()


def test_templates_are_in_the_wheel(plugin_venv):
    import zipfile

    r = plugin_venv.result("wheel")
    assert r.returncode == 0, r.explain()
    (whl,) = (plugin_venv.root / "wheels").glob("oxcore-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    root = Path(__file__).parents[2]
    want = {str(p.relative_to(root)) for p in (root / "oxcore/templates").rglob("*.tmpl")}
    assert len(want) >= 10 and want <= names, sorted(want - names)


def test_generated_backend_passes_the_kit_unchanged(plugin_venv):
    name = SKELETONS["backend"]
    r = plugin_venv.result("kit-skel-backend")
    assert r.returncode == 0, r.explain()
    for op in ("add", "subtract", "multiply", "exp"):
        for dt in ("float32", "float64"):
            assert r.passed(f"test_op[{name}-{op}-{dt}]"), r.outcomes.get(f"test_op[{name}-{op}-{dt}]")
    assert r.passed(f"test_transfers[{name}]") and r.passed(f"test_dlpack[{name}]")


def test_generated_kernels_pass_the_kit_unchanged(plugin_venv):
    r = plugin_venv.result("kit-kernels")
    assert r.returncode == 0, r.explain()
    assert r.passed("test_op[cpu_numpy-relu-float32]") and r.passed("test_op[cpu_numpy-relu-float64]")


def test_generated_packages_own_tests_pass(plugin_venv):
    r = plugin_venv.result("own-tests")
    assert r.returncode == 0, r.explain()
    for name in SKELETONS.values():
        passed = r.passed_in(f"test_{name}")
        assert passed >= 3, f"test_{name}.py: {passed} tests passed\n{r.explain()}"


def test_a_format_named_after_a_real_one_does_not_claim_its_files(tmp_path):
    assert _new(tmp_path, "npy", "--kind", "format").exit_code == 0
    src = (tmp_path / "oxcore-npy/oxcore_npy/__init__.py").read_text()
    assert 'SUFFIX = ".oxnpy"' in src and "suffixes = (SUFFIX,)" in src and '(".npy",)' not in src
    assert "placeholder" in src and "NOT real ``.npy`` files" in src


def test_the_backend_skeleton_names_its_device_library_colon_kind(tmp_path):
    assert _new(tmp_path, "torchcpu", "--kind", "backend").exit_code == 0
    src = (tmp_path / "oxcore-torchcpu/oxcore_torchcpu/_backend.py").read_text()
    assert 'Device("torchcpu:cpu", "cpu",' in src


def _run_generated_tests(pkg: Path, name: str) -> subprocess.CompletedProcess:
    """The package's own tests in a fresh interpreter, the plugin registered as its entry point would."""
    (pkg / "conftest.py").write_text(
        "import importlib\nfrom oxcore.extend import manager\n\n"
        f"manager().register_plugin(importlib.import_module({pkg.name.replace('-', '_')!r}), {name!r})\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OXCORE_")}
    env.update(CI="1", OXCORE_PROFILE="off", PYTHONPATH=str(pkg), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "tests"], cwd=pkg,
                          env=env, capture_output=True, text=True, timeout=300)


def test_generated_backend_tests_still_pass_after_adding_int32_kernels(tmp_path):
    """The skeleton's tests ask ``supports`` what is refused instead of hard-coding int32: an
    author who adds int32 kernels keeps them green, and int32 then runs on the backend."""
    assert _new(tmp_path, "widened", "--kind", "backend").exit_code == 0
    pkg = tmp_path / "oxcore-widened"
    backend = pkg / "oxcore_widened/_backend.py"
    src = backend.read_text()
    assert 'DTYPES = ("float32", "float64")' in src
    backend.write_text(src.replace('DTYPES = ("float32", "float64")', 'DTYPES = ("float32", "float64", "int32")'))
    r = _run_generated_tests(pkg, "widened")
    assert r.returncode == 0, r.stdout + r.stderr
    passed = re.search(r"(\d+) passed", r.stdout)
    assert passed and int(passed.group(1)) >= 10, r.stdout
    assert re.search(r"test_each_dtype_runs_here_or_is_refused_with_a_reason\[int32\] PASSED", r.stdout), r.stdout
    # NOTE: and int32 took the "runs here" branch: the widened supports accepts it now
    sys.path.insert(0, str(pkg))
    try:
        from oxcore_widened._backend import supports
    finally:
        sys.path.remove(str(pkg))
    i32 = SimpleNamespace(dtype=ox.int32)
    assert supports(SimpleNamespace(dtype=ox.int32, inputs=[i32, i32])) is True
    assert isinstance(supports(SimpleNamespace(dtype=ox.int16, inputs=[])), str)
