"""Every code block of docs/guide/nn.md and docs/guide/training.md runs as written."""

import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide"
BLOCKS = [(page, block) for page in ("nn.md", "training.md")
          for block in re.findall(r"^```python\n(.*?)^```", (GUIDE / page).read_text(encoding="utf-8"), re.S | re.M)]


def test_the_pages_have_their_examples():
    assert [p for p, _ in BLOCKS].count("nn.md") == 8 and [p for p, _ in BLOCKS].count("training.md") == 4


@pytest.mark.parametrize("i", range(len(BLOCKS)), ids=[f"{p}[{i}]" for i, (p, _) in enumerate(BLOCKS)])
def test_block_runs(i):
    page, block = BLOCKS[i]
    exec(compile(block, f"{page}[{i}]", "exec"), {"__name__": "__docs__"})
