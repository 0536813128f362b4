"""Terminal table and pull-request summary of ``privaudit dp-audit``, and the one-run bounds rows ``canary`` shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console, RenderableType
from rich.panel import Panel
from rich.table import Table

from privaudit.report.fit import fits, stacked
from privaudit.report.formats import GAUSSIAN_NOTE, bound_rows, bounds_markdown, markdown_gate

if TYPE_CHECKING:
    from privaudit.canary.dpaudit import DpAuditResult
    from privaudit.gate.gate import GateResult
    from privaudit.stats.auditor import OneRunBounds


def bounds_table(bounds: OneRunBounds, *, title: str) -> Table:
    """The three bounds side by side, with the settings and the Gaussian family's assumption in the caption."""
    out = "" if bounds.one_sided else ", and 'out' below it"
    caption = (
        f"{bounds.m} canaries ({bounds.n_in} in, {bounds.n_out} out); confidence {1 - bounds.alpha:.0%}, "
        f"δ = {bounds.delta:g}; guess 'in' above each threshold of the (FN, TN) Pareto frontier{out}: "
        f"{bounds.n_hypotheses} rules, each tested at α/{bounds.n_hypotheses} (Bonferroni)."
        + ("" if bounds.reach is None else f" Reach: ε {bounds.reach:.3f}, the most these canaries can show.")
        + f" * {GAUSSIAN_NOTE}"
    )
    table = Table(title=title, caption=caption)
    for column in ("analysis", "ε lower bound", "μ lower bound", "guesses"):
        table.add_column(column, justify="left" if column in ("analysis", "guesses") else "right", no_wrap=True)
    for row in bound_rows(bounds):
        table.add_row(*row)
    return table


def bounds_view(bounds: OneRunBounds, console: Console, *, title: str) -> RenderableType:
    """:func:`bounds_table` when the console holds it whole; else one block per analysis."""
    table = bounds_table(bounds, title=title)
    if fits(table, console):
        return table
    blocks = [
        (analysis, [f"[dim]ε ≥[/] {eps}", *([f"[dim]μ ≥[/] {mu}"] if mu else []), f"[dim]guesses[/] {guesses}"])
        for analysis, eps, mu, guesses in bound_rows(bounds)
    ]
    return stacked(blocks, width=console.width, title=title, caption=str(table.caption))


def print_dp_audit(result: DpAuditResult, console: Console) -> None:
    """The bounds table, then the theoretical epsilon, and a warning when the strict bound exceeds it."""
    source = result.model.get("scores") or result.model.get("canaries")
    kind = result.source if result.score is None else f"{result.source}, score: {result.score}"
    console.print(bounds_view(result.bounds, console, title=f"one-run audit: {source} ({kind})"))
    eps = result.theoretical_epsilon
    console.print(
        f"theoretical ε: {'unknown (pass --epsilon)' if eps is None else f'{eps:.3f}'} (δ = {result.delta:g})"
    )
    strict = result.bounds.eps_delta.epsilon
    if eps is not None and strict > eps:
        console.print(
            Panel(
                f"The f-DP (ε, δ) bound {strict:.3f} exceeds the theoretical epsilon {eps:.3f}: the DP "
                "implementation has a bug, or the privacy claim is wrong.",
                title="WARNING: privacy claim violated",
                border_style="bold red",
            )
        )
    elif eps is not None and result.bounds.gaussian.epsilon > eps:
        console.print(
            f"note: the Gaussian-family bound {result.bounds.gaussian.epsilon:.3f} exceeds ε {eps:.3f}; it "
            "assumes a Gaussian trade-off curve, so this is a warning sign, not a proof."
        )
    for line in (reach_line(result), estimate_line(result), estimate_warning(result)):
        if line is not None:
            console.print(line, style="yellow" if line.startswith(("warning", "note")) else None, markup=False)


def reach_line(result: DpAuditResult) -> str | None:
    """A note when the claim lies above what these canaries can show at most (so the strict gate cannot fail);
    ``None`` otherwise (the bounds table's caption gives the reach)."""
    b, eps = result.bounds, result.theoretical_epsilon
    if b.reach is None or eps is None or eps <= b.reach:
        return None
    return (
        f"note: with {b.m} canaries this audit can show at most ε {b.reach:.3f}, below the claimed ε {eps:.3f}: "
        "no model can fail the strict bound's gate here; use more canaries, or gate on the estimate "
        "(--fail-if-estimate-exceeds-epsilon)"
    )


def estimate_line(result: DpAuditResult) -> str | None:
    """The Gaussian-fit estimate as one line, labelled as no bound; ``None`` when there is none."""
    e = result.estimate
    if e is None:
        return None
    return (
        f"likelihood estimate ({e.label}): equal-variance Gaussian fit μ {e.mu:.3f} (lower limit {e.mu_lower:.3f}), "
        f"ε {e.epsilon:.3f} (lower limit {e.epsilon_lower:.3f}) at δ = {e.delta:g}, {1 - e.alpha:.0%} confidence "
        "if the scores are Gaussian"
    )


def estimate_warning(result: DpAuditResult) -> str | None:
    """A warning when the claimed epsilon lies below the estimate's lower limit: a sign, not a proof."""
    e, eps = result.estimate, result.theoretical_epsilon
    if e is None or eps is None or not eps < e.epsilon_lower:
        return None
    return (
        f"warning: the claimed ε {eps:.3f} is below the likelihood estimate's lower limit {e.epsilon_lower:.3f}; "
        "the estimate is not a bound, but a claim this far below it deserves a look at the noise, clipping and "
        "sampling"
    )


def dp_audit_markdown(result: DpAuditResult, gate: GateResult) -> str:
    """A pull-request summary: verdict line, the three bounds beside the theoretical epsilon, breaches."""
    icon = "❌" if gate.verdict == "fail" else "✅"
    b = result.bounds
    eps = "unknown" if result.theoretical_epsilon is None else f"{result.theoretical_epsilon:.3f}"
    source = result.model.get("scores") or result.model.get("canaries")
    lines = [
        f"### {icon} privaudit dp-audit: {gate.summary()}",
        "",
        f"Canaries `{source}` ({result.source}{'' if result.score is None else ', score: ' + result.score}): {b.m} ({b.n_in} in, {b.n_out} out); theoretical ε {eps} "
        f"(δ={result.delta:g}); {1 - b.alpha:.0%} confidence, Bonferroni over {b.n_hypotheses} thresholds.",
        "",
        *bounds_markdown(b),
        *(
            f"\n{line}"
            for line in (reach_line(result), estimate_line(result), estimate_warning(result))
            if line is not None
        ),
    ]
    gate_part = markdown_gate(gate)
    return "\n".join(lines) + ("\n\n" + gate_part if gate_part else "") + "\n"
