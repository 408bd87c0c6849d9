"""Every code block of docs/guide/transformations.md runs as written."""

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "transformations.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(encoding="utf-8"), re.S | re.M)


def test_the_page_has_its_examples():
    assert len(BLOCKS) == 7


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_block_runs(i):
    exec(compile(BLOCKS[i], f"{PAGE.name}[{i}]", "exec"), {"__name__": "__docs__"})
