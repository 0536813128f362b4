"""Tables that fit the terminal: whole, or stacked one block per row when the terminal is too narrow.

A Rich table squeezed below its natural width cuts headers ("exposu…") and folds names ("modified-entr / opy"). The
tables here mark every column ``no_wrap``, so they are either shown whole or not at all: :func:`fits` says whether
the terminal holds the table, and :func:`stacked` lays the same cells out as one block per row instead: the row's
name on a line of its own, then its ``label value`` pairs, as many to a line as the width holds. A pair is never
broken across lines.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

_SEPARATOR = "   "
_INDENT = "  "
_UNBOUNDED = 100_000


def fits(table: Table, console: Console) -> bool:
    """Whether ``console`` shows ``table`` without cutting or folding a cell or a header."""
    # Measured on an unbounded width (the console's own clamps the measure to it); every column is no_wrap, so the
    # widest a table gets is also the narrowest it shows whole.
    natural = console.measure(table, options=console.options.update_width(_UNBOUNDED)).maximum
    return natural <= console.width


def stacked(
    blocks: Sequence[tuple[str, Sequence[str]]], *, width: int, title: str | None = None, caption: str | None = None
) -> Group:
    """One block per row: its heading, then its items packed into lines of at most ``width`` cells.

    Args:
        blocks: ``(heading, items)`` per row, in Rich markup; an item is one ``label value`` pair.
        width: the terminal's width.
        title: a line above the blocks.
        caption: prose below the blocks, wrapped as text.

    Returns:
        A renderable for ``console.print``.
    """
    lines: list[Text] = []
    if title:
        lines.append(Text.from_markup(f"[italic]{title}[/]"))
    for heading, items in blocks:
        lines.append(Text.from_markup(f"[bold]{heading}[/]"))
        current: Text | None = None
        for item in items:
            piece = Text.from_markup(item)
            if current is not None and current.cell_len + len(_SEPARATOR) + piece.cell_len <= width:
                current.append(_SEPARATOR)
                current.append_text(piece)
                continue
            if current is not None:
                lines.append(current)
            current = Text(_INDENT)
            current.append_text(piece)
        if current is not None:
            lines.append(current)
    if caption:
        lines.append(Text.from_markup(f"[dim]{caption}[/]"))
    return Group(*lines)


__all__ = ["fits", "stacked"]
