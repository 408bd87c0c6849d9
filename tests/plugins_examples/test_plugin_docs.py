"""The plugin-author docs stay true: snippets run, excerpts match the example sources, every
hook has its section, every page is in the mkdocs nav.

Conventions in docs/plugins/*.md: a ```python block whose first line is ``# <path>.py`` is an
excerpt of that file (checked verbatim when the file is in the repository, illustrative
otherwise); every other ```python block is a complete script, run in a fresh interpreter.
tutorial.md's scripts need the example plugins installed, so they run in the plugin venv.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ._docs import blocks, excerpts, runnable_blocks

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "docs" / "plugins"
def _run(code: str, tmp: Path) -> tuple[str, subprocess.CompletedProcess]:
    tmp.mkdir()
    (tmp / "snippet.py").write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OXCORE_")}
    env["OXCORE_PROFILE"] = "off"
    return code, subprocess.run([sys.executable, "snippet.py"], cwd=tmp, env=env, capture_output=True, text=True,
                                timeout=300)


def test_snippets_run(tmp_path):
    """Every complete script of the plugin pages (but the tutorial's) exits 0."""
    codes = [b for page in sorted(PAGES.glob("*.md")) if page.name != "tutorial.md" for b in runnable_blocks(page)]
    assert len(codes) >= 8
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda ic: _run(ic[1], tmp_path / f"s{ic[0]}"), enumerate(codes)))
    bad = [f"--- snippet:\n{code}\n--- output:\n{p.stdout}{p.stderr}" for code, p in results if p.returncode]
    assert not bad, "\n".join(bad)


def test_tutorial_snippets_run_with_the_examples_installed(plugin_venv):
    results = plugin_venv.result("tutorial")
    assert len(results) >= 3
    bad = [f"--- snippet:\n{code}\n{r.explain()}" for code, r in results if r.returncode]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("page", sorted(p.name for p in PAGES.glob("*.md")))
def test_excerpts_match_their_files(page):
    for path, body in excerpts(PAGES / page):
        f = ROOT / path
        if not f.exists():
            assert not path.startswith(("docs/", "oxcore/", "plugins/")), f"{page}: {path} does not exist"
            continue
        assert body in f.read_text(encoding="utf-8"), f"{page}: this excerpt is not in {path}:\n{body}"


def test_tutorial_covers_the_three_examples():
    text = (PAGES / "tutorial.md").read_text(encoding="utf-8")
    files = {path for path, _ in excerpts(PAGES / "tutorial.md")}
    for example in ("oxcore-toy-backend", "oxcore-toy-kernels", "oxcore-npz"):
        assert any(example in f for f in files), f"no excerpt of {example}"
        pyproject = (ROOT / "docs/examples" / example / "pyproject.toml").read_text(encoding="utf-8")
        assert pyproject in blocks(PAGES / "tutorial.md", "toml"), f"{example}'s pyproject.toml differs from the tutorial's"
        assert len(pyproject.strip().splitlines()) <= 7, f"{example}'s pyproject.toml is meant to stay tiny"
    assert "--oxcore-backend toy" in text and "--oxcore-format npz" in text


def test_every_hook_has_a_section_with_a_snippet():
    import oxcore.hookspecs as hs

    hooks = [n for n in dir(hs) if n.startswith("oxcore_")]
    text = (PAGES / "hooks.md").read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.M)
    for h in hooks:
        sec = [s for s in sections if s.startswith(f"`{h}`")]
        assert sec, f"docs/plugins/hooks.md has no section for {h}"
        assert "```python" in sec[0] and f"def {h}(" in sec[0], f"the {h} section has no snippet implementing it"


def test_pages_are_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in PAGES.glob("*.md"):
        assert f"plugins/{page.name}" in nav, f"docs/plugins/{page.name} is not in mkdocs.yml's nav"
    assert " ops.md" in nav
