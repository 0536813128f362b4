"""Rich tables for ``privaudit canary``."""

from __future__ import annotations

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from privaudit.canary.run import CanaryResult


def canary_table(result: CanaryResult) -> Table:
    """One row per exposure canary: inserted or control, exposure, and what ModIvA recovered."""
    spaces = {r.extraction.space_size for r in result.rows if r.extraction is not None}
    caption = f"seed {result.seed}. exposure in bits; rank: the true secret's rank under ModIvA's final distribution"
    if len(spaces) == 1:
        caption += f", out of {spaces.pop()} candidates"
    table = Table(title=f"canaries: {result.model.get('path') or result.model.get('endpoint')}", caption=caption)
    for column in ("secret", "label", "inserted", "exposure", "ModIvA guess", "slots", "rank"):
        table.add_column(column, justify="left" if column in ("secret", "label", "ModIvA guess") else "right")
    for row in sorted(result.rows, key=lambda r: (not r.canary.inserted, -(r.exposure or 0))):
        c, x = row.canary, row.extraction
        inserted = f"yes ×{c.repeats}" if c.inserted else "control"
        exposure = "-" if row.exposure is None else f"{row.exposure:.2f}"
        if x is None:
            guess = slots = rank = "-"
        else:
            guess = " ".join(x.guess) + (" [bold red]✓[/]" if x.recovered else "")
            slots = f"{x.slot_accuracy:.0%}"
            rank = "-" if x.rank is None else str(x.rank)
        table.add_row(" ".join(c.secret), c.label, inserted, exposure, guess, slots, rank)
    return table


def print_canary(result: CanaryResult, console: Console) -> None:
    """The per-canary table, then the summary, the one-run bound and the theoretical epsilon."""
    if result.rows:
        console.print(canary_table(result))
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
    extracted = [r for r in result.group(True) if r.extraction is not None]
    if extracted:
        baseline = extracted[0].extraction.random_baseline
        lines.append(
            f"ModIvA recovered {result.extracted(True)} of {len(extracted)} inserted secrets exactly "
            f"(controls: {result.extracted(False)}; random guessing: {baseline:.0e} each)"
        )
    one = result.one_run
    if one is not None:
        lines.append(
            f"one-run audit: ε ≥ {one.epsilon_lower_bound:.3f} at 95% confidence "
            f"({one.v} of {one.r} guesses right, {one.m} canaries)"
        )
    console.print(Panel("\n".join(lines), title="canary audit"))
    if one is not None and eps is not None and one.epsilon_lower_bound > eps:
        console.print(
            Panel(
                f"The one-run bound {one.epsilon_lower_bound:.3f} exceeds the theoretical epsilon {eps:.3f}: "
                "the DP implementation has a bug, or the model's privacy metadata is wrong.",
                title="WARNING: privacy claim violated",
                border_style="bold red",
            )
        )
