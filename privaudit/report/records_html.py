"""HTML sections of the per-example and slice results: the most exposed members, and one table per slice kind.

Like :mod:`privaudit.report.html`, they only render what the result holds; every user string is escaped, and a text
appears only when the result kept it (``--redact-texts`` keeps none).
"""

from __future__ import annotations

import html

from privaudit.mia.run import MiaResult
from privaudit.mia.slices import Slice, Slices


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def most_exposed_section(result: MiaResult) -> str:
    """The ``--top N`` members under the strongest attack, with the FPR at which each would be flagged."""
    top = result.most_exposed
    if top is None:
        return ""
    with_text = any(m.text is not None for m in top.members)
    head = ["rank", "file", "index", "label", "score", "flagged at FPR", "SHA-256"] + (["text"] if with_text else [])
    rows = []
    for m in top.members:
        cells = [
            f'<td class="num">{m.rank}</td>',
            f"<td><code>{_e(m.file)}</code></td>",
            f'<td class="num">{m.index}</td>',
            f"<td>{_e(m.label if m.label is not None else '-')}</td>",
            f'<td class="num">{m.score:.4g}</td>',
            f'<td class="num">{m.flag_fpr:.2%}</td>',
            f'<td><code title="{_e(m.sha256 or "")}">{_e((m.sha256 or "-")[:12])}</code></td>',
        ]
        if with_text:
            cells.append(f"<td>{_e(m.text if m.text is not None else '')}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    header = "".join(f"<th>{h}</th>" for h in head)
    return (
        f"<h2>Most exposed members ({len(top.members)})</h2>\n"
        f'<p class="muted">Ranked by the strongest attack, <strong>{_e(top.attack)}</strong> ({_e(top.rule)}). '
        "“Flagged at FPR”: the share of non-members scoring at or above the member, i.e. the false-positive rate "
        "at which the attack would flag it.</p>\n"
        f'<table class="metrics">\n<tr>{header}</tr>\n' + "\n".join(rows) + "\n</table>"
    )


def _slice_rows(piece: Slice) -> list[str]:
    counts = f'<td class="num">{piece.n_members}</td><td class="num">{piece.n_non_members}</td>'
    if not piece.measured:
        return [f'<tr><td>{_e(piece.value)}</td>{counts}<td colspan="5" class="muted">{_e(piece.note)}</td></tr>']
    rows = []
    for attack in piece.attacks:
        m = attack.metrics
        tprs = {t.fpr: t for t in m.tpr_at_fpr}
        cells = []
        for fpr in (0.01, 0.1):
            t = tprs.get(fpr)
            cells.append("n/a" if t is None or not t.supported else f"{t.tpr:.3f} [{t.low:.3f}, {t.high:.3f}]")
        rows.append(
            f"<tr><td>{_e(piece.value)}</td>{counts}<td>{_e(attack.name)}</td>"
            f'<td class="num">{m.auc.value:.3f} [{m.auc.low:.3f}, {m.auc.high:.3f}]</td>'
            + "".join(f'<td class="num">{c}</td>' for c in cells)
            + f'<td class="num">{m.epsilon_lower_bound:.3f}</td></tr>'
        )
    return rows


def slices_section(slices: Slices | None) -> str:
    """One table per slice kind: counts, and each attack's AUC, TPR at 1% and 10% FPR and ε bound."""
    if slices is None:
        return ""
    parts = [
        "<h2>Slices</h2>",
        f'<p class="muted">Every attack measured on each slice (intervals at 95%). A slice needs '
        f"{slices.min_per_side} members and {slices.min_per_side} non-members (--slice-min); a smaller one is "
        "listed with its counts, unmeasured, and the gate skips it.</p>",
    ]
    head = "<tr><th>{kind}</th><th>members</th><th>non-members</th><th>attack</th><th>AUC</th>"
    head += "<th>TPR at 1% FPR</th><th>TPR at 10% FPR</th><th>ε lower bound</th></tr>"
    for kind in slices.kinds:
        rows = [row for piece in slices.of_kind(kind) for row in _slice_rows(piece)]
        parts.append(f"<h3>by {_e(kind)}</h3>\n" + '<table class="metrics">\n' + head.format(kind=_e(kind)))
        parts.append("\n".join(rows) + "\n</table>")
    return "\n".join(parts)
