"""Rich tables for the terminal."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from privaudit.mia.run import MiaResult
from privaudit.report.slice_table import slice_tables


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
    table.add_column("attack", style="bold", overflow="fold", min_width=8)
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


def print_mia(result: MiaResult, console: Console) -> None:
    """The table, and a loud warning when an empirical bound exceeds the theoretical epsilon."""
    console.print(mia_table(result))
    if result.users is not None:
        from privaudit.report.users import users_table

        console.print(users_table(result))
    if result.slices is not None:
        for table in slice_tables(result.slices):
            console.print(table)
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
