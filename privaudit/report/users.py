"""What a user-level audit (``--group-by``) adds to the reports: its counts, its aggregation, and the record-level
numbers and the group-privacy bound beside the user-level ones. Reads the result; computes nothing."""

from __future__ import annotations

from rich import box
from rich.table import Table

from privaudit.mia.types import MiaResult

NO_DP = "none (trained without DP)"


def _tpr(entries, fpr: float = 0.01) -> float | None:
    for t in entries:
        value = t["tpr"] if isinstance(t, dict) else t.tpr
        at = t["fpr"] if isinstance(t, dict) else t.fpr
        supported = t["supported"] if isinstance(t, dict) else t.supported
        if abs(at - fpr) < 1e-12:
            return value if supported else None
    return None


def _number(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def group_privacy_text(result: MiaResult) -> str:
    """The group-privacy ε and δ of the largest user, in words."""
    users = result.users
    bound = users.group_privacy()
    if bound is None:
        return NO_DP
    eps, delta = bound
    text = f"ε = {eps:.3g}, δ = {delta:.3g} (k = {users.max_records})"
    if not delta < 1.0:
        text += ": δ ≥ 1, no guarantee"
    return text


def user_rows(result: MiaResult) -> list[tuple[str, str]]:
    """``(what, value)`` rows describing the user-level audit, for the HTML header and the terminal."""
    users = result.users
    records = users.records
    return [
        ("audited", f"users, by '{users.field}' (--group-by)"),
        ("member users", f"{result.n_members} ({users.n_member_records} records)"),
        ("non-member users", f"{result.n_non_members} ({users.n_non_member_records} records)"),
        ("records per user", f"{int(records.min())}–{users.max_records}, median {float(_median(records)):g}"),
        ("aggregation", f"{users.aggregate}: {users.aggregate_source}"),
        ("record-level theoretical ε", NO_DP if users.epsilon is None else f"{users.epsilon:.3f}"),
        ("group privacy, largest user", group_privacy_text(result)),
    ]


def _median(values) -> float:
    import numpy as np

    return float(np.median(values))


def users_table(result: MiaResult) -> Table:
    """Per attack: record-level and user-level AUC and TPR at 1% FPR, the user-level ε bound beside the record-level
    theoretical ε and the group-privacy ε of the largest user."""
    users = result.users
    caption = "; ".join(f"{k}: {v}" for k, v in user_rows(result))
    table = Table(title="records against users", caption=caption, box=box.SIMPLE_HEAD, padding=(0, 1))
    for name in ("attack", "AUC rec.", "AUC users", "TPR@1% rec.", "TPR@1% users", "ε ≥ users", "ε DP", "ε group"):
        table.add_column(name, justify="left" if name == "attack" else "right")
    bound = users.group_privacy()
    for attack in result.attacks:
        record = users.record_level.get(attack.name)
        table.add_row(
            attack.name,
            _number(None if record is None else record.auc.value),
            _number(attack.metrics.auc.value),
            _number(None if record is None else _tpr(record.tpr_at_fpr)),
            _number(_tpr(attack.metrics.tpr_at_fpr)),
            f"{attack.metrics.epsilon_lower_bound:.3f}",
            "∞" if users.epsilon is None else f"{users.epsilon:.3f}",
            "∞" if bound is None else f"{bound[0]:.3g}",
        )
    return table
