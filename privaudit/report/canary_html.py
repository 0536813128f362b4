"""One self-contained HTML file for a canary audit: the verdict, summary, per-canary table, candidate losses."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from privaudit.canary.run import CanaryResult
from privaudit.report.canary_table import extraction_summary, loss_rank_text, plugin_attacks, plugin_cell
from privaudit.report.formats import GAUSSIAN_NOTE, bound_rows
from privaudit.report.headline import check_line
from privaudit.report.html import _e, _img, page, verdict_section, write_document
from privaudit.report.plots import candidate_loss_figure

if TYPE_CHECKING:
    from privaudit.gate.gate import GateResult


def render_canary_html(result: CanaryResult, *, gate: GateResult | None = None) -> str:
    """The canary report as an HTML string (same bytes for the same result), opening with the gate's verdict."""
    eps = result.theoretical_epsilon
    summary = result.to_dict()["summary"]
    failed = [] if gate is None else [check_line(c) for c in gate.failed]
    body = [
        verdict_section(None if gate is None else gate.verdict, None if gate is None else gate.summary(), failed),
        "<table>",
        f"<tr><th>model</th><td><code>{_e(result.model.get('path') or result.model.get('endpoint'))}</code></td></tr>",
        f"<tr><th>canary file</th><td><code>{_e(result.model['canaries'])}</code></td></tr>",
        f"<tr><th>theoretical ε</th><td>{'none (trained without DP)' if eps is None else f'{eps:.3f}'}"
        f" (δ = {result.delta:g})</td></tr>",
        f"<tr><th>seed</th><td>{result.seed}</td></tr>",
        "</table>",
    ]
    if result.one_run is not None:
        one = result.one_run
        warn = ' class="exceeded"' if eps is not None and one.epsilon_lower_bound > eps else ""
        body.append(
            f"<h2>One-run audit</h2><p{warn}>ε ≥ {one.epsilon_lower_bound:.3f} at 95% confidence: {one.v} of "
            f"{one.r} guesses right among {one.m} canaries (Steinke, Nasr, Jagielski 2023).</p>"
        )
    if result.one_run_bounds is not None:
        b = result.one_run_bounds
        body.append(
            '<table class="metrics"><tr><th>analysis</th><th>ε lower bound</th><th>μ lower bound</th><th>guesses</th></tr>'
        )
        body += ["<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in bound_rows(b)]
        body.append(
            f"</table><p>On the same audit canaries: every threshold of the (FN, TN) Pareto frontier, {b.n_hypotheses} "
            f"rules at α/{b.n_hypotheses} each. * {_e(GAUSSIAN_NOTE)}.</p>"
        )
    if result.rows:
        body.append("<h2>Secrets</h2>")
        for key in ("mean_exposure_inserted", "mean_exposure_controls", "extracted_inserted", "extracted_controls"):
            value = summary[key]
            shown = "-" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))
            body.append(f"<p>{_e(key.replace('_', ' '))}: <b>{shown}</b></p>")
        extraction = extraction_summary(result)
        if extraction is not None:
            body.append(f"<p>{_e(extraction)}.</p>")
        plugins = plugin_attacks(result)
        body.append(
            '<table class="metrics"><tr><th>secret</th><th>label</th><th>inserted</th><th>exposure</th>'
            "<th>loss rank</th><th>ModIvA guess</th><th>search's own guess</th><th>slots right</th><th>ModIvA rank</th>"
            + "".join(f"<th>{_e(name)} guess</th>" for name in plugins)
            + "</tr>"
        )
        for row in result.rows:
            c, x = row.canary, row.extraction
            cells = [
                " ".join(c.secret),
                c.label,
                f"yes ×{c.repeats}" if c.inserted else "control",
                "-" if row.exposure is None else f"{row.exposure:.2f}",
                loss_rank_text(row),
                "-" if x is None else " ".join(x.guess) + (" ✓" if x.recovered else ""),
                "-" if x is None else " ".join(x.search_guess) + (" ✓" if x.search_recovered else ""),
                "-" if x is None else f"{x.slot_accuracy:.0%}",
                "-" if x is None or x.rank is None else f"{x.rank} / {x.space_size}",
            ]
            for name in plugins:
                text, recovered = plugin_cell(row.extraction_attacks.get(name))
                cells.append(text + (" ✓" if recovered else ""))
            body.append("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in cells) + "</tr>")
        body.append("</table>")
        body.append(
            '<p class="muted">loss rank: the secret\'s rank by loss among the candidates of its space (1 = the '
            "lowest loss; ~ when estimated from a sample); ModIvA guess: the lowest-loss secret of the whole space "
            "when it has at most the exact budget of secrets (exhaustive), else its search's; search's own guess: "
            "what the Gumbel-softmax search found on its own; ModIvA rank: the secret's rank under the search's "
            "final distribution.</p>"
        )
    for name, losses in result.candidate_losses.items():
        inserted = [r for r in result.rows if r.canary.inserted and f"{r.canary.template} -> {r.canary.label}" == name]
        body.append(f"<h2>Candidates of <code>{_e(name)}</code></h2>")
        for row in inserted:
            figure = candidate_loss_figure(losses, row.loss, f"secret {' '.join(row.canary.secret)}")
            body.append(_img(figure, f"loss of every candidate, and of secret {' '.join(row.canary.secret)}"))
    return page(f"privaudit canary audit: {result.model.get('path') or result.model.get('endpoint')}", body)


def write_canary_html(result: CanaryResult, path: Path, *, gate: GateResult | None = None) -> None:
    """Write the canary report atomically; ``gate``: the gate's result, or ``None`` when no gate ran."""
    write_document(render_canary_html(result, gate=gate), path)
