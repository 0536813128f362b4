"""Rich tables for ``privaudit canary``."""

from __future__ import annotations

import json

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from privaudit.canary.run import CanaryResult
from privaudit.report.dpaudit_table import bounds_view
from privaudit.report.fit import fits, stacked

_COLUMNS = ("secret", "label", "inserted", "exposure", "loss rank", "ModIvA guess", "search", "slots", "ModIvA rank")


def plugin_attacks(result: CanaryResult) -> list[str]:
    """The third-party extraction attacks with results (``extraction_attacks`` of the rows), in order of appearance."""
    return list(dict.fromkeys(name for row in result.rows for name in row.extraction_attacks))


def plugin_cell(found: dict | None) -> tuple[str, bool]:
    """A third-party attack's result for one canary in a few words (its ``guess``), and whether it ``recovered`` it."""
    if found is None:
        return "-", False
    recovered = bool(found.get("recovered"))
    if "guess" in found:
        guess = found["guess"]
        return (" ".join(map(str, guess)) if isinstance(guess, list) else str(guess)), recovered
    if "recovered" in found:
        return ("recovered" if recovered else "not recovered"), False
    return json.dumps(found, sort_keys=True), False


def canary_table(result: CanaryResult) -> Table:
    """One row per exposure canary: inserted or control, exposure, what ModIvA and any plugin attack recovered."""
    spaces = {r.extraction.space_size for r in result.rows if r.extraction is not None}
    caption = (
        f"seed {result.seed}. exposure in bits; loss rank: the secret's rank by loss among its space's candidates "
        "(~ when extrapolated); ModIvA guess: " + guess_method_text(result) + "; search: the search's own guess; "
        "ModIvA rank: the secret's rank under the search's final distribution"
    )
    if len(spaces) == 1:
        caption += f", out of {spaces.pop()} candidates"
    table = Table(title=f"canaries: {result.model.get('path') or result.model.get('endpoint')}", caption=caption)
    # no_wrap: a cell or header is shown whole or the table is not shown (canary_view stacks it instead).
    for column in _COLUMNS:
        justify = "left" if column in ("secret", "label", "ModIvA guess", "search") else "right"
        table.add_column(column, justify=justify, no_wrap=True)
    plugins = plugin_attacks(result)
    for name in plugins:
        table.add_column(f"{escape(name)} guess", no_wrap=True)
    for row in _ordered(result):
        c, x = row.canary, row.extraction
        inserted = f"yes ×{c.repeats}" if c.inserted else "control"
        exposure = "-" if row.exposure is None else f"{row.exposure:.2f}"
        loss_rank = loss_rank_text(row)
        if x is None:
            guess = search = slots = rank = "-"
        else:
            guess = " ".join(x.guess) + (" [bold red]✓[/]" if x.recovered else "")
            search = " ".join(x.search_guess) + (" [bold red]✓[/]" if x.search_recovered else "")
            slots = f"{x.slot_accuracy:.0%}"
            rank = "-" if x.rank is None else str(x.rank)
        extra = []
        for name in plugins:
            text, recovered = plugin_cell(row.extraction_attacks.get(name))
            extra.append(escape(text) + (" [bold red]✓[/]" if recovered else ""))
        table.add_row(" ".join(c.secret), c.label, inserted, exposure, loss_rank, guess, search, slots, rank, *extra)
    return table


def guess_method_text(result: CanaryResult) -> str:
    """How ModIvA's guesses were made: exhaustively (within its budget), by its search alone, or both."""
    found = [r.extraction for r in result.rows if r.extraction is not None]
    if not found:
        return "not run"
    budget = found[0].exact_budget
    methods = {x.guess_method for x in found}
    if methods == {"exhaustive"}:
        return f"the lowest-loss secret of the whole space (exhaustive: at most {budget:,} secrets)"
    if methods == {"search"}:
        return f"the search's (space over the exact budget of {budget:,} secrets)"
    return f"exhaustive for spaces of at most {budget:,} secrets, the search's above"


def extraction_summary(result: CanaryResult) -> str | None:
    """One line: what ModIvA's guess and its search alone recovered, inserted and controls."""
    extracted = [r for r in result.group(True) if r.extraction is not None]
    if not extracted:
        return None
    baseline = extracted[0].extraction.random_baseline
    return (
        f"ModIvA recovered {result.extracted(True)} of {len(extracted)} inserted secrets exactly "
        f"(controls: {result.extracted(False)}; random guessing: {baseline:.0e} each); its search alone "
        f"{result.search_extracted(True)} (controls: {result.search_extracted(False)}). Guesses: "
        f"{guess_method_text(result)}"
    )


def _ordered(result: CanaryResult) -> list:
    """Inserted canaries first, then the controls; each by exposure, highest first."""
    return sorted(result.rows, key=lambda r: (not r.canary.inserted, -(r.exposure or 0)))


def canary_view(result: CanaryResult, console: Console) -> RenderableType:
    """:func:`canary_table` when the console holds it whole; else one block per canary with the same cells."""
    table = canary_table(result)
    if fits(table, console):
        return table
    headers = [str(column.header) for column in table.columns]
    blocks = []
    for row, cells in zip(_ordered(result), zip(*(column.cells for column in table.columns))):
        heading = f"{cells[0]} [dim]→[/] {escape(row.canary.label)} [dim]({cells[2]})[/]"
        items = [f"[dim]{header}[/] {cell}" for header, cell in zip(headers[3:], cells[3:])]
        blocks.append((heading, items))
    return stacked(blocks, width=console.width, title=str(table.title), caption=str(table.caption))


def loss_rank_text(row) -> str:
    """``12 / 10000``, ``~3.1e+04 / 1e+08`` when estimated by extrapolation, ``-`` when exposure was not run."""
    if row.exposure_rank is None:
        return "-"
    if isinstance(row.exposure_rank, int):
        return f"{row.exposure_rank} / {row.exposure_rank_of}"
    return f"~{row.exposure_rank:.2g} / {row.exposure_rank_of:.2g}"


def print_canary(result: CanaryResult, console: Console) -> None:
    """The per-canary table, then the summary, the one-run bound and the theoretical epsilon."""
    if result.rows:
        console.print(canary_view(result, console))
    eps = result.theoretical_epsilon
    lines = [f"theoretical ε: {'∞ (no DP)' if eps is None else f'{eps:.3f}'} (δ = {result.delta:g})"]
    inserted, controls = result.mean_exposure(True), result.mean_exposure(False)
    if inserted is not None:
        lines.append(
            f"mean exposure: inserted {inserted:.2f}, controls {controls:.2f} bits "
            f"({result.exposure_method}; a random secret has about 1.44 bits)"
            if controls is not None
            else f"mean exposure: inserted {inserted:.2f} bits"
        )
    extraction = extraction_summary(result)
    if extraction is not None:
        lines.append(extraction)
    for name in plugin_attacks(result):
        found = [r.extraction_attacks[name] for r in result.group(True) if name in r.extraction_attacks]
        if found and all("recovered" in f for f in found):
            controls = [r.extraction_attacks.get(name, {}) for r in result.group(False)]
            lines.append(
                f"{name} recovered {sum(bool(f['recovered']) for f in found)} of {len(found)} inserted secrets "
                f"exactly (controls: {sum(bool(f.get('recovered')) for f in controls)})"
            )
    one = result.one_run
    if one is not None:
        lines.append(
            f"one-run audit: ε ≥ {one.epsilon_lower_bound:.3f} at 95% confidence "
            f"({one.v} of {one.r} guesses right, {one.m} canaries)"
        )
    console.print(Panel("\n".join(lines), title="canary audit"))
    if result.one_run_bounds is not None:
        console.print(bounds_view(result.one_run_bounds, console, title="one-run audit: f-DP and Steinke bounds"))
    if one is not None and eps is not None and one.epsilon_lower_bound > eps:
        console.print(
            Panel(
                f"The one-run bound {one.epsilon_lower_bound:.3f} exceeds the theoretical epsilon {eps:.3f}: "
                "the DP implementation has a bug, or the model's privacy metadata is wrong.",
                title="WARNING: privacy claim violated",
                border_style="bold red",
            )
        )
