"""The core holds no plugin code: no module under oxcore/ imports mlx or gguf or a plugin
package, and no code (docstrings and comments aside) names a plugin's backend or distribution.
cpu_numpy is the core's declared default backend (a dependency of `oxcore`), so it may be named."""

from __future__ import annotations

import ast
from pathlib import Path

import oxcore

CORE = Path(oxcore.__file__).parent
FORBIDDEN_IMPORTS = ("mlx", "gguf", "numba", "oxcore_metal_basic", "oxcore_metal_fused", "oxcore_io_gguf",
                     "oxcore_kernels_ggml")
PLUGIN_NAMES = ("metal_basic", "metal_fused", "io_gguf", "oxcore-metal-basic", "oxcore-metal-fused",
                "oxcore-io-gguf", "kernels_ggml", "oxcore-kernels-ggml")


def _modules() -> list[Path]:
    return [p for p in CORE.rglob("*.py") if "templates" not in p.parts]


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_no_core_module_imports_mlx_gguf_or_a_plugin():
    bad = []
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            bad += [f"{p.relative_to(CORE)}:{node.lineno} imports {n}" for n in names
                    if n.split(".")[0] in FORBIDDEN_IMPORTS]
    assert not bad, "\n".join(bad)


def test_no_core_code_names_a_plugin():
    bad = []
    for p in _modules():
        tree = ast.parse(p.read_text(), str(p))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                bad += [f"{p.relative_to(CORE)}:{node.lineno} names {n!r}" for n in PLUGIN_NAMES if n in node.value]
    assert not bad, "\n".join(bad)


def test_the_checks_see_a_violation(tmp_path):
    # NOTE: the scanners above must be able to fail: feed them a module that breaks both rules
    src = 'import mlx.core as mx\nBACKEND = "metal_fused"\n'
    tree = ast.parse(src)
    imports = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
               and id(n) not in _docstrings(tree)]
    assert any(i.split(".")[0] in FORBIDDEN_IMPORTS for i in imports)
    assert any(name in s for s in strings for name in PLUGIN_NAMES)
