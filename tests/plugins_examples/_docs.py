"""Code blocks of the docs pages: complete scripts, and excerpts of files (``# <path>.py`` first)."""

from __future__ import annotations

import re
from pathlib import Path

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
EXCERPT = re.compile(r"# ([\w./-]+\.py)\n")


def blocks(page: Path, lang: str = "python") -> list[str]:
    return [body for info, body in FENCE.findall(page.read_text(encoding="utf-8")) if info == lang]


def runnable_blocks(page: Path) -> list[str]:
    return [b for b in blocks(page) if not EXCERPT.match(b)]


def excerpts(page: Path) -> list[tuple[str, str]]:
    out = []
    for b in blocks(page):
        m = EXCERPT.match(b)
        if m:
            out.append((m.group(1), b[m.end():]))
    return out
