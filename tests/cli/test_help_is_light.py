"""`oxcore --help` lists every command, plugins' included, without running a backend factory:
no MLX import, no GPU runtime started (plugins are imported, not collected), and without
ml_dtypes (~0.5 s to import; loaded by the first bfloat16)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from click.testing import CliRunner
from oxcore.cli import main
out = CliRunner().invoke(main, ["bench", "--help"]).output
heavy = sorted(m for m in ("mlx", "mlx.core", "gguf", "ml_dtypes") if m in sys.modules)
import ml_dtypes, numpy as np, oxcore as ox  # an ml_dtypes array before oxcore ever needed bfloat16
a = ox.asarray(np.array([1.5, -2.0], ml_dtypes.bfloat16))
print(json.dumps({"heavy": heavy, "help": out, "bf16": [str(a.dtype), (a * 2).tolist()]}))
"""


def test_help_imports_no_mlx_or_gguf_and_still_lists_plugin_commands():
    p = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["heavy"] == [], f"--help imported {got['heavy']}"
    assert got["bf16"] == ["oxcore.bfloat16", [3.0, -4.0]]  # ml_dtypes loads on first use
    from oxcore.extend import manager

    # NOTE: commands plugins add (oxcore-io-gguf's `bench gguf`, metal_fused's `bench block`) are listed
    for name, plugin in (("gguf", "io_gguf"), ("block", "metal_fused")):
        if plugin in manager().plugins:
            assert f"  {name} " in got["help"], got["help"]
