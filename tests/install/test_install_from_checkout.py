"""README's "from a checkout" command, run as written in a copy of this checkout and a fresh
virtualenv: the six local packages must resolve against each other (``pip install .`` alone
cannot: oxcore needs oxcore-cpu-numpy, which lives in plugins/) and ``oxcore backends list``
must then work from what was installed, not from this editable checkout.

NOTE: offline and quick: the venv sees the project environment's third-party packages (numpy,
mlx, setuptools...) but none of its oxcore distributions, and pip builds the six packages with
``--no-build-isolation --no-index``. The full path (wheels, an index, a bare venv) is CI's
``scripts/wheel-check``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plugins_examples._venv import PluginVenv  # NOTE: tests/ is on sys.path (pytest rootdir-style imports)

ROOT = Path(__file__).resolve().parents[2]
COMMAND = 'pip install ".[all]" ./plugins/*'


def checkout_copy(dest: Path) -> Path:
    """The files a clone of this checkout has (tracked and new, not ignored), links kept."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"not a git checkout ({e})")
    for rel in filter(None, out.decode().split("\0")):
        src, dst = ROOT / rel, dest / rel
        if not os.path.lexists(src):
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory):
    if sys.platform == "win32":
        pytest.skip("the temp-venv helper uses the POSIX venv layout (bin/python)")
    v = PluginVenv(tmp_path_factory.mktemp("checkout"))
    try:
        v.create(hide="oxcore")
        clone = checkout_copy(v.root / "clone")
        assert v.run("-c", "import oxcore", cwd=v.work).returncode != 0, "the venv must start without oxcore"
        plugins = sorted(str(p.relative_to(clone)) for p in clone.glob("plugins/*") if p.is_dir())
        args = COMMAND.split()[2:-1] + [f"./{p}" for p in plugins]
        r = v.run("-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index", "--no-build-isolation",
                  *(a.strip('"') for a in args), cwd=clone)
        assert r.returncode == 0, r.explain()
        yield v
    finally:
        v.close()


def test_readme_documents_the_command_tested_here():
    assert COMMAND in (ROOT / "README.md").read_text()


def test_backends_list_runs_from_the_installed_packages(installed):
    where = installed.run("-c", "import oxcore, oxcore_cpu_numpy, oxcore_metal_fused, oxcore_io_gguf as m; "
                          "print(oxcore.__file__, oxcore_cpu_numpy.__file__, oxcore_metal_fused.__file__, m.__file__)")
    assert where.returncode == 0, where.explain()
    site = str(installed.root / "venv")
    assert all(p.startswith(site) for p in where.output.split()), where.output
    r = installed.run(str(installed.python.parent / "oxcore"), "backends", "list", "--json")
    assert r.returncode == 0, r.explain()
    rows = {row["name"]: row for row in json.loads(r.output)}
    assert rows["cpu_numpy"]["smoke"] == "pass", rows["cpu_numpy"]
    assert {"metal_basic", "metal_fused"} <= set(rows)
    if sys.platform == "linux":  # NOTE: `.[all]` brings mlx[cpu] there
        assert all(rows[b]["available"] and rows[b]["smoke"] == "pass" for b in ("metal_basic", "metal_fused")), rows
    table = installed.run(str(installed.python.parent / "oxcore"), "backends", "list")
    assert table.returncode == 0 and table.output.splitlines()[0].split()[0] == "name", table.explain()
