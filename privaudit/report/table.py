"""Rich tables for the terminal: the verdict first, then one row per attack."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from privaudit.mia.run import MiaResult
from privaudit.report.fit import fits, stacked
from privaudit.report.headline import Headline, check_line, headline
from privaudit.report.slice_table import slice_views

if TYPE_CHECKING:
    from privaudit.gate.gate import GateResult

# Failed checks listed in the summary; the gate's table below lists them all.
_SUMMARY_CHECKS = 4


def _interval(value: float, low: float, high: float) -> str:
    return f"{value:.3f}\n[dim]{low:.2f}–{high:.2f}[/]"


def _chosen(result: MiaResult) -> str:
    """The parameters attacks chose for themselves (``*_used``, e.g. RMIA's ``a`` and temperature), one clause each."""
    clauses = []
    for attack in result.attacks:
        params = getattr(attack, "params", None) or {}
        used = {k[: -len("_used")]: v for k, v in params.items() if k.endswith("_used")}
        if used:
            clauses.append(
                f"{attack.name} used "
                + ", ".join(f"{k} = {v:g}" if isinstance(v, int | float) else f"{k} = {v}" for k, v in used.items())
            )
    return ("; ".join(clauses) + ". ") if clauses else ""


def mia_table(result: MiaResult) -> Table:
    """One row per attack: AUC, TPR at low FPR, advantage, empirical epsilon beside the theoretical one."""
    eps = result.theoretical_epsilon
    source = result.model.get("path") or result.model.get("endpoint") or result.model.get("scores")
    unsupported = any(not t.supported for a in result.attacks for t in a.metrics.tpr_at_fpr)
    unit = "users" if getattr(result, "users", None) is not None else ""
    caption = (
        f"{result.n_members} member{' ' + unit if unit else 's'}, {result.n_non_members} non-member"
        f"{' ' + unit if unit else 's'}, "
        f"{result.n_reference_models} reference models, seed {result.seed}. Below each value its 95% interval; "
        + ("TPR at FPR n/a: too few non-members. " if unsupported else "")
        + _chosen(result)
        + f"ε ≥: empirical lower bound at 95% (δ = {result.delta:g}); ε DP: theoretical (∞ without DP)."
    )
    table = Table(
        title=f"membership inference: {source}",
        caption=caption,
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("attack", style="bold", no_wrap=True, min_width=8)
    table.add_column("AUC", justify="right", min_width=9, no_wrap=True)
    fprs = [t.fpr for t in result.attacks[0].metrics.tpr_at_fpr] if result.attacks else []
    for fpr in fprs:
        table.add_column(f"TPR@{fpr * 100:g}%", justify="right", min_width=9, no_wrap=True)
    table.add_column("adv.", justify="right", min_width=5, no_wrap=True)
    table.add_column("ε ≥", justify="right", min_width=5, no_wrap=True)
    table.add_column("ε DP", justify="right", min_width=5, no_wrap=True)
    claim = result.claimed_epsilon() if hasattr(result, "claimed_epsilon") else eps
    over = {a.name for a in result.attacks if claim is not None and a.metrics.epsilon_lower_bound > claim}
    for attack in result.attacks:
        m = attack.metrics
        cells = [attack.name, _interval(m.auc.value, m.auc.low, m.auc.high)]
        for t in m.tpr_at_fpr:
            cells.append(_interval(t.tpr, t.low, t.high) if t.supported else "[dim]n/a[/]")
        bound = f"{m.epsilon_lower_bound:.3f}"
        if attack.name in over:
            bound = f"[bold red]{bound} > ε[/]"
        cells += [f"{m.advantage:.3f}", bound, "∞" if eps is None else f"{eps:.3f}"]
        table.add_row(*cells)
    return table


def mia_view(result: MiaResult, console: Console) -> RenderableType:
    """:func:`mia_table` when the console holds it whole; else the same numbers stacked, one block per attack."""
    table = mia_table(result)
    if fits(table, console):
        return table
    eps = result.theoretical_epsilon
    blocks = []
    for attack in result.attacks:
        m = attack.metrics
        items = [f"AUC {m.auc.value:.3f} [dim]({m.auc.low:.2f}–{m.auc.high:.2f})[/]"]
        for t in m.tpr_at_fpr:
            value = f"{t.tpr:.3f} [dim]({t.low:.2f}–{t.high:.2f})[/]" if t.supported else "[dim]n/a[/]"
            items.append(f"TPR@{t.fpr * 100:g}% {value}")
        bound = f"{m.epsilon_lower_bound:.3f}"
        if eps is not None and m.epsilon_lower_bound > eps:
            bound = f"[bold red]{bound} > ε[/]"
        items += [f"adv. {m.advantage:.3f}", f"ε ≥ {bound}", f"ε DP {'∞' if eps is None else f'{eps:.3f}'}"]
        blocks.append((escape(attack.name), items))
    caption = str(table.caption).replace(
        "Below each value its 95% interval", "In parentheses each value's 95% interval"
    )
    return stacked(blocks, width=console.width, title=str(table.title), caption=caption)


def print_mia(result: MiaResult, console: Console) -> None:
    """The table (stacked on a narrow terminal), and a loud warning when an empirical bound exceeds epsilon."""
    console.print(mia_view(result, console))
    if result.users is not None:
        from privaudit.report.users import users_table

        console.print(users_table(result))
    if result.slices is not None:
        for view in slice_views(result.slices, console):
            console.print(view)
    exceeded = result.exceeded()
    if exceeded:
        names = ", ".join(a.name for a in exceeded)
        console.print(
            Panel(
                f"The empirical epsilon lower bound of {names} exceeds the theoretical epsilon "
                f"{result.claimed_epsilon():.3f}.\nThis should be impossible under the claimed guarantee: "
                "the DP implementation has a bug, or the model's privacy metadata is wrong.",
                title="WARNING: privacy claim violated",
                border_style="bold red",
            )
        )


def summary_lines(head: Headline) -> list[str]:
    """The summary's lines (Rich markup): verdict and failed checks, strongest attack, largest epsilon bound.

    At most ``4 + _SUMMARY_CHECKS`` lines, each short enough for 80 columns unless an attack's name is long.
    """
    lines = []
    if head.verdict is not None:
        style = "bold red" if head.verdict == "fail" else "bold green"
        lines.append(f"[{style}]{escape(head.summary or head.verdict)}[/]")
        shown = head.failed[:_SUMMARY_CHECKS]
        lines += [f"  [red]✗[/] {escape(check_line(c))}" for c in shown]
        if len(head.failed) > len(shown):
            lines.append(f"  [dim]and {len(head.failed) - len(shown)} more: see the gate below[/]")
    level = head.confidence
    if head.strongest is None:
        lines.append("no attack was run")
        return lines
    name = escape(head.strongest.name)
    t = head.strongest_tpr
    if t is not None:
        lines.append(
            f"strongest attack: [bold]{name}[/], TPR {t.tpr:.3f} at 1% FPR [dim]({level} CI {t.low:.3f}–{t.high:.3f})[/]"
        )
    else:
        auc = head.strongest.metrics.auc
        lines.append(
            f"strongest attack: [bold]{name}[/], AUC {auc.value:.3f} [dim]({level} CI {auc.low:.3f}–{auc.high:.3f}; "
            "TPR at 1% FPR n/a)[/]"
        )
    bound = head.largest_bound
    eps = head.theoretical_epsilon
    text = f"{bound.metrics.epsilon_lower_bound:.3f}"
    if head.exceeded:
        text = f"[bold red]{text} > ε[/]"
    claim = "∞ (no DP)" if eps is None else f"{eps:.3f}"
    lines.append(f"empirical ε ≥ {text} [dim]({escape(bound.name)}, {level})[/]; theoretical ε {claim}")
    return lines


def print_summary(result: MiaResult, gate: GateResult | None, console: Console) -> None:
    """The verdict first: the gate's verdict and failed checks, the strongest attack, the largest ε bound."""
    console.print(
        Panel(
            "\n".join(summary_lines(headline(result, gate))), title="privaudit mia", title_align="left", expand=False
        ),
        highlight=False,
    )
