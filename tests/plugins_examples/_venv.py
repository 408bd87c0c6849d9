"""A throw-away virtualenv with plugin packages really installed (entry points and all).

It is built once per test session: ``python -m venv --without-pip`` on the running
interpreter, plus a ``.pth`` file that adds the running environment's site-packages (so
oxcore, pytest, hypothesis and pip are importable there without reinstalling them:
``--system-site-packages`` would add the *base* interpreter's packages, not the project
venv's). The packages go in with one offline ``pip install --no-deps --no-build-isolation``
call. Commands then run in it as subprocesses; slow ones are started in the background as
soon as the venv is ready (two at a time, for two cores) and tests wait for their results.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
TIMEOUT = 600
#: docs/examples/<folder> -> plugin (entry point) name
EXAMPLE_PLUGINS = {"oxcore-toy-backend": "toy", "oxcore-toy-kernels": "toy_kernels", "oxcore-npz": "npz"}
#: kind -> the NAME the tests give `oxcore plugin new`
SKELETONS = {"backend": "skel_backend", "kernels": "skel_kernels", "format": "skel_format"}


@dataclass
class Run:
    """A finished command: return code, output, and pytest outcomes when it was pytest."""

    args: list[str]
    returncode: int
    output: str
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # test name -> (outcome, message)
    modules: dict[str, list[str]] = field(default_factory=dict)  # test module -> outcomes

    def explain(self) -> str:
        return f"$ {' '.join(self.args)}\n(exit {self.returncode})\n{self.output[-6000:]}"

    def passed(self, name: str) -> bool:
        return self.outcomes.get(name, ("missing", ""))[0] == "passed"

    def passed_in(self, module: str) -> int:
        """How many tests of the module named ``module`` (last dotted part) passed."""
        return sum(o == "passed" for m, outs in self.modules.items() if m.split(".")[-1] == module for o in outs)


def can_build_wheels() -> bool:
    """Whether the running environment's setuptools builds wheels by itself (>= 70.1) or has
    the ``wheel`` package; ``--no-build-isolation`` builds need one or the other."""
    try:
        import setuptools
    except ImportError:
        return False
    try:
        import wheel  # noqa: F401

        return True
    except ImportError:
        pass
    parts = []
    for p in setuptools.__version__.split(".")[:2]:
        parts.append(int("".join(c for c in p if c.isdigit()) or 0))
    return tuple(parts) >= (70, 1)


class PluginVenv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = root / "venv" / "bin" / "python"
        self.src = root / "src"
        self.work = root / "work"
        self.packages: list[Path] = []
        self.jobs: dict[str, Future] = {}
        self._pool = ThreadPoolExecutor(max_workers=2)

    # --- building -------------------------------------------------------------------------------
    def create(self, hide: str = "") -> None:
        """Make the venv. ``hide``: entries of the running environment's site-packages whose name
        contains it stay invisible there (``"oxcore"``: the venv starts without any oxcore
        distribution, editable or not, yet keeps numpy, mlx, pip, setuptools...)."""
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(self.root / "venv")], check=True)
        purelib = Path(subprocess.check_output(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
        parents = list(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
        if hide:
            parents = [str(self._filtered_site(Path(p), hide, i)) for i, p in enumerate(parents)]
        (purelib / "_oxcore_parent_env.pth").write_text(
            "".join(f"import site; site.addsitedir({p!r})\n" for p in parents))
        self.src.mkdir()
        self.work.mkdir()
        if not can_build_wheels():
            # NOTE: setuptools < 70.1 without `wheel` cannot build; get a newer one, once
            r = self.run("-m", "pip", "install", "-q", "--disable-pip-version-check", "setuptools>=70.1")
            if r.returncode:
                raise RuntimeError("the project environment's setuptools cannot build wheels and installing "
                                   "setuptools>=70.1 into the test venv failed (offline?). Install "
                                   f"setuptools>=70.1 or wheel into the project environment.\n{r.explain()}")

    def _filtered_site(self, site_dir: Path, hide: str, i: int) -> Path:
        """A directory of links to ``site_dir``'s entries except those whose name contains ``hide``."""
        out = self.root / f"parent-site-{i}"
        out.mkdir()
        for entry in site_dir.iterdir():
            if hide not in entry.name.lower().replace("-", "_"):
                (out / entry.name).symlink_to(entry)
        return out

    def add_example(self, name: str) -> Path:
        dst = self.src / name
        shutil.copytree(EXAMPLES / name, dst, ignore=shutil.ignore_patterns(
            "__pycache__", "*.egg-info", "build", ".pytest_cache", ".hypothesis"))
        return dst

    def add_package(self, dist: str, module: str, entry_point: str, source: str) -> Path:
        """A one-module package written on the spot (a 6-line pyproject, as in the tutorial)."""
        d = self.src / dist
        (d / module).mkdir(parents=True)
        (d / module / "__init__.py").write_text(source)
        (d / "pyproject.toml").write_text(
            f'[project]\nname = "{dist}"\nversion = "0.1.0"\n\n'
            f'[project.entry-points.oxcore]\n{entry_point} = "{module}"\n')
        return d

    def install(self, *dirs: Path) -> None:
        r = self.run("-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                     "--no-build-isolation", "--no-index", *map(str, dirs), cwd=self.root)
        if r.returncode:
            raise RuntimeError(f"pip install failed:\n{r.explain()}")

    # --- running ----------------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OXCORE_") and k != "PYTHONPATH"}
        # NOTE: CI picks the kit's quick hypothesis profile; no profile means placement by priors only
        # and the deliberately wrong kernel package stays off unless a test turns it on
        env.update(CI="1", OXCORE_PROFILE="off", OXCORE_DISABLE_PLUGINS="broken_gelu", PYTHONDONTWRITEBYTECODE="1",
                   NO_COLOR="1", COLUMNS="200")
        env.update(extra)
        return env

    def run(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Run:
        cmd = [str(self.python), *args]
        p = subprocess.run(cmd, cwd=cwd or self.work, env=env or self.env(), capture_output=True, text=True,
                           timeout=TIMEOUT)
        return Run(cmd, p.returncode, p.stdout + p.stderr)

    def pytest(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, tag: str = "") -> Run:
        xml = self.root / f"junit-{tag or abs(hash(args))}.xml"
        r = self.run("-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={xml}", *args, cwd=cwd, env=env)
        if xml.exists():
            r.outcomes, r.modules = junit_outcomes(xml)
        return r

    def pinned_kernel(self, op: str, dtype: str, shape: tuple[int, ...], env: dict[str, str] | None = None,
                      **attrs: Any) -> str:
        """The id of the kernel the scheduler picks for ``op`` pinned to cpu_numpy (what the kit tests)."""
        code = (f"import numpy as np, oxcore as ox\n"
                f"x = ox.asarray(np.linspace(-2, 2, {math.prod(shape)}).reshape({shape!r}).astype({dtype!r}))\n"
                f"with ox.use('cpu_numpy'):\n    y = getattr(ox, {op!r})(x, **{attrs!r})\n"
                f"print(next(p.kernel.id for p in ox.explain(y).nodes if p.op == {op!r}))\n")
        r = self.run("-c", code, env=env)
        assert r.returncode == 0, r.explain()
        return r.output.strip().splitlines()[-1]

    def submit(self, name: str, fn: Any, *args: Any, **kw: Any) -> None:
        self.jobs[name] = self._pool.submit(fn, *args, **kw)

    def result(self, name: str) -> Run:
        return self.jobs[name].result(timeout=TIMEOUT)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def junit_outcomes(path: Path) -> tuple[dict[str, tuple[str, str]], dict[str, list[str]]]:
    """(test name -> (outcome, message), test module -> outcomes) from a JUnit XML report."""
    out: dict[str, tuple[str, str]] = {}
    modules: dict[str, list[str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                message = (child.get("message") or "") + "\n" + (child.text or "")
                break
        out[case.get("name")] = (outcome, message)
        modules.setdefault(case.get("classname") or "", []).append(outcome)
    return out, modules
