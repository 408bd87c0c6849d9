"""`oxcore --help` lists every command, plugins' included, without running a backend factory:
no MLX import, no GPU runtime started (plugins are imported, not collected)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from click.testing import CliRunner
from oxcore.cli import main
out = CliRunner().invoke(main, ["bench", "--help"]).output
print(json.dumps({"heavy": sorted(m for m in ("mlx", "mlx.core", "gguf") if m in sys.modules), "help": out}))
"""


def test_help_imports_no_mlx_or_gguf_and_still_lists_plugin_commands():
    p = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["heavy"] == [], f"--help imported {got['heavy']}"
    from oxcore.extend import manager

    # NOTE: commands plugins add (oxcore-io-gguf's `bench gguf`, metal_fused's `bench block`) are listed
    for name, plugin in (("gguf", "io_gguf"), ("block", "metal_fused")):
        if plugin in manager().plugins:
            assert f"  {name} " in got["help"], got["help"]
