"""Listings that stay readable at 80 columns and in a pipe, as ``pip list`` and ``uv`` print them.

A listing is a header, rows of short cells, and under a row the notes that are too long for a
cell (an unavailable backend's reason, a smoke-test error), each printed once. In a terminal
rich adds colour and wraps notes to the width; in a pipe or a file the same lines come out as
plain aligned text, never cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

# NOTE: rich is imported when a listing prints, not when the CLI loads (`oxcore --help` stays fast)

#: a cell: its text, or ``(text, rich style)`` (the style only shows in a terminal)
Cell = Union[str, tuple[str, str]]
NOTE_INDENT = 4


@dataclass
class Listing:
    """Rows under a header; ``print()`` chooses terminal or plain output.

    Example:
        >>> t = Listing("demo", ["name", "status"])
        >>> t.add("cpu_numpy", ("PASS", "green"))
        >>> t.add("metal_basic", ("no", "red"), notes=["not available: pip install 'mlx[cpu]'"])
        >>> print(t.plain())
        name         status
        -----------  ------
        cpu_numpy    PASS
        metal_basic  no
            not available: pip install 'mlx[cpu]'
    """

    title: str
    columns: list[str]
    rows: list[tuple[list[Cell], list[str]]] = field(default_factory=list)

    def add(self, *cells: Cell, notes: list[str] | tuple[str, ...] = ()) -> None:
        """Add a row; each note prints on its own line under the row."""
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {self.title!r} needs {len(self.columns)} cells "
                             f"({', '.join(self.columns)}), got {len(cells)}")
        self.rows.append((list(cells), [n for n in notes if n]))

    def _lines(self) -> list[tuple[Text, bool]]:
        """(line, is_note) pairs. Cells become rich ``Text``, never markup.

        NOTE: plugin-provided strings (reasons, errors, descriptions) print as written, brackets
        included: Text is never parsed as markup (what ``rich.markup.escape`` is for elsewhere).
        """
        from rich.text import Text

        cells = [[_split(c) for c in row] for row, _ in self.rows]
        widths = [max([len(h), *(len(r[i][0]) for r in cells)]) for i, h in enumerate(self.columns)]
        out = [(_join([(h, "bold") for h in self.columns], widths), False),
               (_join([("-" * w, "dim") for w in widths], widths), False)]
        for row, (_, notes) in zip(cells, self.rows):
            out.append((_join(row, widths), False))
            out.extend((Text(n), True) for n in notes)
        return out

    def plain(self) -> str:
        """The listing as plain aligned text (what a pipe gets)."""
        return "\n".join((" " * NOTE_INDENT if note else "") + line.plain for line, note in self._lines())

    def print(self, console: Any = None) -> None:
        """Print to the terminal with colour and wrapped notes, or as plain text when not a terminal."""
        from rich.console import Console
        from rich.padding import Padding
        from rich.text import Text

        console = console or Console()
        if not console.is_terminal:
            # NOTE: no width to fit in a pipe: rich would wrap at COLUMNS (or 80) and cut cells
            console.file.write(self.plain() + "\n")
            return
        console.print(Text(self.title, style="bold"))
        for line, note in self._lines():
            if note:
                console.print(Padding(line, (0, 0, 0, NOTE_INDENT), expand=False), style="dim")
            else:
                console.print(line, no_wrap=True, overflow="ignore", crop=False)


def _split(cell: Cell) -> tuple[str, str]:
    return (cell, "") if isinstance(cell, str) else (str(cell[0]), cell[1])


def _join(cells: list[tuple[str, str]], widths: list[int]) -> Any:
    from rich.text import Text

    t = Text()
    for i, ((s, style), w) in enumerate(zip(cells, widths)):
        last = i == len(cells) - 1
        t.append(s, style=style or None)
        if not last:
            t.append(" " * (w - len(s) + 2))
    t.rstrip()
    return t
