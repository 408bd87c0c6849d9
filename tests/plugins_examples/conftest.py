"""Session fixture: the tutorial's three example plugins, the three ``oxcore plugin new``
skeletons, a deliberately wrong kernel package and a plugin built for an old API, all really
installed into one temporary virtualenv (see ``_venv.py``). The slow runs (the conformance
kit on each package, their own tests, ``oxcore validate``) start in the background as soon
as the venv is ready; the tests wait for the results they check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ._docs import runnable_blocks
from ._venv import EXAMPLE_PLUGINS, SKELETONS, PluginVenv, Run

# NOTE: kernels_ggml's numba rms_norm (cheaper prior than the toy einsum kernel) would win the pinned
# placement, so the kit would test it instead of the toy kernel: the toy kit run leaves it out
TOY_KERNELS_ALONE = "broken_gelu,kernels_ggml"


BROKEN = '''"""Wrong on purpose: gelu on cpu_numpy, 1% too large in float64 (other dtypes are right)."""
import numpy as np
from oxcore.extend import Kernel, hookimpl

OXCORE_PLUGIN_API = 1


def gelu(x, *, approximate):
    from oxcore_cpu_numpy import KERNELS

    y = KERNELS["gelu"](x, approximate=approximate)
    return y * 1.01 if x.dtype == np.float64 else y


@hookimpl
def oxcore_register_kernels(register):
    register(Kernel("gelu", "cpu_numpy", gelu, name="broken", prior_us=lambda node: 0.01))
'''

OLD_API = '''"""Written for a plugin API this oxcore does not speak: it must be refused, not half-loaded."""
from oxcore.extend import Backend, hookimpl

OXCORE_PLUGIN_API = 0


@hookimpl
def oxcore_register_backends(register):
    register(Backend())
'''


def _own_tests(v: PluginVenv, dirs: list[Path]) -> Run:
    return v.pytest(*(str(d / "tests") for d in dirs), cwd=v.work, tag="own")


def _wheel(v: PluginVenv) -> Run:
    """Build oxcore's own wheel from a copy of the sources (does package-data ship the templates?)."""
    import shutil

    root, src = Path(__file__).parents[2], v.root / "oxcore-src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "oxcore", src / "oxcore", ignore=shutil.ignore_patterns("__pycache__"))
    return v.run("-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps", "--no-build-isolation",
                 "--no-index", "-w", str(v.root / "wheels"), str(src))


def _tutorial_snippets(v: PluginVenv) -> list[tuple[str, Run]]:
    out = []
    for i, code in enumerate(runnable_blocks(Path(__file__).parents[2] / "docs/plugins/tutorial.md")):
        d = v.work / f"tutorial-{i}"
        d.mkdir()
        (d / "snippet.py").write_text(code)
        out.append((code, v.run("snippet.py", cwd=d)))
    return out


@pytest.fixture(scope="session")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory):
    if sys.platform == "win32":
        pytest.skip("the temp-venv helper uses the POSIX venv layout (bin/python)")
    from click.testing import CliRunner

    from oxcore.cli import main

    v = PluginVenv(tmp_path_factory.mktemp("plugins"))
    try:
        v.create()
        dirs = [v.add_example(name) for name in EXAMPLE_PLUGINS]
        for kind, name in SKELETONS.items():
            r = CliRunner().invoke(main, ["plugin", "new", name, "--kind", kind, "--dir", str(v.src)])
            assert r.exit_code == 0, r.output
            dirs.append(v.src / ("oxcore-" + name.replace("_", "-")))
        extra = [v.add_package("oxcore-broken-gelu", "oxcore_broken_gelu", "broken_gelu", BROKEN),
                 v.add_package("oxcore-old-api", "oxcore_old_api", "old_api", OLD_API)]
        v.install(*dirs, *extra)
        v.packages = dirs
        by = {d.name: d for d in dirs}
        # NOTE: longest first; two at a time
        v.submit("kit-toy", v.pytest, "--oxcore-backend", "toy", cwd=by["oxcore-toy-backend"], tag="toy")
        v.submit("kit-skel-backend", v.pytest, "--oxcore-backend", "skel_backend",
                 cwd=by["oxcore-skel-backend"], tag="skel")
        v.submit("validate", v.run, "-m", "oxcore", "validate", "--backend", "toy", "--backend", "cpu_numpy",
                 "--json", env=v.env(OXCORE_DISABLE_PLUGINS=""))
        v.submit("own-tests", _own_tests, v, dirs)
        v.submit("kit-kernels", v.pytest, "--oxcore-backend", "cpu_numpy", "-k", "rms_norm or relu",
                 cwd=by["oxcore-toy-kernels"], tag="kernels", env=v.env(OXCORE_DISABLE_PLUGINS=TOY_KERNELS_ALONE))
        v.submit("kit-broken", v.pytest, "--oxcore-backend", "cpu_numpy", "-k", "gelu",
                 cwd=v.work, tag="broken", env=v.env(OXCORE_DISABLE_PLUGINS=""))
        v.submit("kit-formats", v.pytest, "--oxcore-format", "npz", "--oxcore-format", "skel_format",
                 "-k", "test_format_", cwd=by["oxcore-npz"], tag="formats")
        v.submit("tutorial", _tutorial_snippets, v)
        v.submit("wheel", _wheel, v)
        yield v
    finally:
        v.close()
