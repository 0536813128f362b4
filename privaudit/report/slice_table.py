"""Rich tables of ``--slice``: one table per slice kind, one row per slice and attack, compact at 80 columns."""

from __future__ import annotations

from rich import box
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table

from privaudit.mia.slices import Slices
from privaudit.report.fit import fits, stacked
from privaudit.stats.metrics import TprAtFpr

# The TPR columns shown: slices are small, so 0.1% FPR is rarely resolved and is left to the JSON report.
_FPRS = (0.01, 0.1)


def _tpr(points: tuple[TprAtFpr, ...], fpr: float) -> str:
    t = next((t for t in points if abs(t.fpr - fpr) < 1e-12), None)
    return "[dim]n/a[/]" if t is None or not t.supported else f"{t.tpr:.3f}"


def slice_tables(slices: Slices) -> list[Table]:
    """One table per kind: slice, members/non-members, attack, AUC with its interval, TPR at 1% and 10% FPR, ε ≥.

    A slice with too few examples gets one row saying so, with its counts.
    """
    tables = []
    for kind in slices.kinds:
        table = Table(
            title=f"slices by {kind}",
            caption=f"AUC with its 95% interval; a slice needs {slices.min_per_side} members and "
            f"{slices.min_per_side} non-members (--slice-min). Gate one as {kind}=VALUE\\[/ATTACK]:METRIC=LIMIT.",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            pad_edge=False,
            collapse_padding=True,
        )
        table.add_column(kind, style="bold", no_wrap=True)
        table.add_column("in/out", justify="right", no_wrap=True)
        table.add_column("attack", no_wrap=True)
        table.add_column("AUC", justify="right", no_wrap=True)
        for fpr in _FPRS:
            table.add_column(f"TPR@{fpr * 100:g}%", justify="right", no_wrap=True)
        table.add_column("ε ≥", justify="right", no_wrap=True)
        for piece in slices.of_kind(kind):
            counts = f"{piece.n_members}/{piece.n_non_members}"
            if not piece.measured:
                table.add_row(escape(piece.value), counts, "", "[yellow]too few examples[/]", "", "", "")
                continue
            for i, attack in enumerate(piece.attacks):
                m = attack.metrics
                auc = f"{m.auc.value:.3f} [dim]{m.auc.low:.2f}–{m.auc.high:.2f}[/]"
                tprs = [_tpr(m.tpr_at_fpr, f) for f in _FPRS]
                first = i == 0
                table.add_row(
                    escape(piece.value) if first else "",
                    counts if first else "",
                    escape(attack.name),
                    auc,
                    *tprs,
                    f"{m.epsilon_lower_bound:.2f}",
                )
        tables.append(table)
    return tables


def slice_views(slices: Slices, console: Console) -> list[RenderableType]:
    """:func:`slice_tables`, each stacked (one block per slice and attack) when the console cannot hold it whole."""
    views: list[RenderableType] = []
    for table in slice_tables(slices):
        if fits(table, console):
            views.append(table)
            continue
        headers = [str(column.header) for column in table.columns]
        blocks, piece, counts = [], "", ""
        for cells in zip(*(column.cells for column in table.columns)):
            piece, counts = (cells[0], cells[1]) if cells[0] else (piece, counts)
            heading = f"{piece} [dim]({counts})[/]" + (f" · {cells[2]}" if cells[2] else "")
            items = [f"[dim]{h}[/] {c}" for h, c in zip(headers[3:], cells[3:]) if c]
            blocks.append((heading, items))
        views.append(stacked(blocks, width=console.width, title=str(table.title), caption=str(table.caption)))
    return views
