"""The version of oxcore, read from ``oxcore/VERSION``: the one place it is written.

Every distribution of the repository reads that file when it is built (the core through
``[tool.setuptools.dynamic]``, each plugin through its ``VERSION`` link to it), so the five
always release together; plugins pin the core to a compatible range (``>=0.1,<0.2``).
"""

from __future__ import annotations

from pathlib import Path

__version__ = Path(__file__).with_name("VERSION").read_text(encoding="utf-8").strip()
