"""One self-contained HTML file for a membership-inference audit: the verdict first, then the details.

The page opens with the answer: the gate's verdict and its failed checks, the strongest attack's TPR at 1% FPR, the
largest empirical epsilon lower bound beside the theoretical epsilon, and one log-log ROC plot of every attack
(:mod:`privaudit.report.headline`). The audit's settings, one metrics table per attack, the slices, the most exposed
members and the score histograms follow.

Everything the page needs is inside it (inline CSS, figures as base64 PNG ``data:`` URIs, no script), so it can be
mailed or attached to a CI run and opened offline. Every string that comes from the user or a plugin (model path,
attack names, descriptions, parameters, title) goes through :func:`html.escape`. The page holds no time stamp, so
the same result gives the same bytes.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from privaudit import __version__
from privaudit.errors import PrivauditError
from privaudit.mia.run import AttackResult, MiaResult
from privaudit.report.headline import Headline, check_line, headline
from privaudit.report.plots import histogram_figure, roc_figure
from privaudit.report.records_html import most_exposed_section, slices_section
from privaudit.stats.metrics import AttackMetrics

if TYPE_CHECKING:
    from privaudit.gate.gate import GateResult

_FINGERPRINT_CHARS = 12

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d1d1f;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { text-align: left; padding: 0.3em 0.9em 0.3em 0; vertical-align: top; }
td.num { font-variant-numeric: tabular-nums; text-align: right; }
table.metrics th, table.metrics td { border-bottom: 1px solid #eee; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.92em; word-break: break-all; }
.muted { color: #6e6e73; }
.exceeded { color: #b00020; font-weight: bold; }
.warning { border: 3px solid #b00020; background: #fdecea; color: #5f0010; padding: 0.8em 1.2em; margin: 1.5em 0; }
.warning h2 { border: none; margin-top: 0; color: #b00020; }
.verdict { border-left: 8px solid #6e6e73; background: #f5f5f7; padding: 0.6em 1.2em; margin: 1em 0; }
.verdict.fail { border-color: #b00020; background: #fdecea; }
.verdict.pass { border-color: #1e7d32; background: #e8f5e9; }
.verdict h2 { border: none; margin: 0.2em 0; font-size: 1.5em; }
.verdict.fail h2 { color: #b00020; }
.verdict.pass h2 { color: #1e7d32; }
.verdict ul { margin: 0.3em 0; }
table.headline th { font-weight: normal; color: #6e6e73; }
table.headline td { font-size: 1.1em; }
img { max-width: 100%; height: auto; }
footer { margin-top: 3em; font-size: 0.85em; color: #6e6e73; }
"""


def write_html(result: MiaResult, path: Path, *, title: str | None = None, gate: GateResult | None = None) -> None:
    """Write a membership-inference audit as one self-contained HTML file, atomically.

    The file opens with the verdict: the gate's verdict and failed checks, the strongest attack's TPR at 1% FPR,
    the largest empirical epsilon lower bound beside the theoretical epsilon (with a warning when it exceeds it), and
    the ROC curves of all attacks on one log-log plot. The audit's settings, one metrics table per attack and each
    attack's member / non-member score histogram follow. It is written to a temporary file beside ``path`` and
    moved into place, so a reader never sees half a report.

    Args:
        result: the audit, from :func:`privaudit.mia.run.run_mia`.
        path: where to write the report; an existing file is replaced.
        title: the page title; by default one naming the audited model.
        gate: the gate's result; ``None`` (the Python API) says that no gate ran.

    Raises:
        PrivauditError: if the file cannot be written.
    """
    write_document(render_html(result, title=title, gate=gate), path)


def write_document(document: str, path: Path) -> None:
    """Write an HTML document atomically: to a temporary file beside ``path``, then moved into place.

    Raises:
        PrivauditError: if the file cannot be written.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as handle:
            handle.write(document.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise PrivauditError(f"{path}: cannot write the HTML report ({err.strerror or err})") from err


def render_html(result: MiaResult, *, title: str | None = None, gate: GateResult | None = None) -> str:
    """The HTML document :func:`write_html` writes, as a string.

    Args:
        result: the audit.
        title: the page title; by default one naming the audited model.
        gate: the gate's result, or ``None`` when no gate ran.

    Returns:
        A complete HTML5 document.
    """
    page_title = title if title is not None else f"privaudit membership inference: {_source(result)}"
    head = headline(result, gate)
    first = [verdict_section(head.verdict, head.summary, [check_line(c) for c in head.failed])]
    first += [_headline_table(head), _warning(result), _roc(result)]
    details = [_header(result), _metric_tables(result), slices_section(result.slices), most_exposed_section(result)]
    return page(page_title, [*first, *details, _histograms(result)])


def verdict_section(verdict: str | None, summary: str | None, failed: list[str]) -> str:
    """The verdict box that opens a report: ``PASS`` or ``FAIL``, the gate's summary and each failed check."""
    if verdict is None:
        return (
            '<section class="verdict"><h2>Not gated</h2>\n<p>No gate ran: this report checks no threshold '
            "(the command line's <code>--fail-above</code> gates an audit).</p></section>"
        )
    items = "".join(f"<li>{_e(line)}</li>" for line in failed)
    checks = f"\n<ul>{items}</ul>" if items else ""
    return (
        f'<section class="verdict {_e(verdict)}" role="status"><h2>Verdict: {_e(verdict.upper())}</h2>\n'
        f"<p>{_e(summary or verdict)}</p>{checks}</section>"
    )


def _headline_table(head: Headline) -> str:
    if head.strongest is None or head.largest_bound is None:
        return ""
    level = head.confidence
    name = f"<strong>{_e(head.strongest.name)}</strong>"
    t = head.strongest_tpr
    if t is not None:
        strongest = f"{name}: TPR {_interval(t.tpr, t.low, t.high)} at 1% FPR ({level} CI)"
    else:
        auc = head.strongest.metrics.auc
        strongest = (
            f"{name}: AUC {_interval(auc.value, auc.low, auc.high)} ({level} CI); TPR at 1% FPR n/a: too few "
            "non-members"
        )
    m = head.largest_bound.metrics
    bound = f"{m.epsilon_lower_bound:.3f}"
    if head.exceeded:
        bound = f'<span class="exceeded">{bound} &gt; theoretical ε</span>'
    eps = head.theoretical_epsilon
    claim = "none (trained without DP)" if eps is None else f"{eps:.3f}"
    rows = [
        ("strongest attack", strongest),
        ("largest empirical ε lower bound", f"{bound} ({_e(head.largest_bound.name)}, {level}, δ = {m.delta:g})"),
        ("theoretical ε", claim),
    ]
    body = "\n".join(f'<tr><th scope="row">{k}</th><td>{v}</td></tr>' for k, v in rows)
    return f'<table class="headline">\n{body}\n</table>'


def page(title: str, body: list[str]) -> str:
    """A complete self-contained HTML5 page with privaudit's style around ``body`` (already escaped HTML)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_e(title)}</h1>",
        *body,
        f"<footer>Written by privaudit {_e(__version__)}.</footer>",
        "</body>",
        "</html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _header(result: MiaResult) -> str:
    model = result.model or {}
    rows = []
    if model.get("path") is not None:
        rows.append(("model", f"<code>{_e(model['path'])}</code>"))
    if model.get("endpoint") is not None:
        rows.append(("endpoint", f"<code>{_e(model['endpoint'])}</code> ({_e(model.get('endpoint_format', ''))})"))
    fingerprint = model.get("fingerprint")
    if fingerprint:
        short = str(fingerprint)[:_FINGERPRINT_CHARS]
        rows.append(("fingerprint", f'<code title="sha256 {_e(fingerprint)}">{_e(short)}</code>'))
    if model.get("scores") is not None:
        rows.append(("scores from", f"<code>{_e(model['scores'])}</code>"))
    for key in sorted(k for k in model if k not in {"path", "fingerprint", "scores"}):
        rows.append((_e(key), _e(json.dumps(model[key], sort_keys=True, default=str))))
    eps = result.theoretical_epsilon
    rows += [
        ("seed", _e(result.seed)),
        ("privaudit version", _e(__version__)),
        ("members", _e(result.n_members)),
        ("non-members", _e(result.n_non_members)),
        ("reference models", _e(result.n_reference_models)),
        ("theoretical ε", "none (trained without DP)" if eps is None else _e(f"{eps:.3f}")),
        ("δ", _e(f"{result.delta:g}")),
    ]
    if result.users is not None:
        from privaudit.report.users import user_rows

        rows += [(_e(k), _e(v)) for k, v in user_rows(result)]
    body = "\n".join(f'<tr><th scope="row">{k}</th><td>{v}</td></tr>' for k, v in rows)
    return f'<h2>Audit</h2>\n<table class="header">\n{body}\n</table>'


def _warning(result: MiaResult) -> str:
    exceeded = result.exceeded()
    if not exceeded:
        return ""
    eps = result.claimed_epsilon()
    items = "\n".join(
        f"<li><strong>{_e(a.name)}</strong>: empirical ε ≥ {a.metrics.epsilon_lower_bound:.3f} "
        f"at {_level(a.metrics)} confidence, above the theoretical ε = {eps:.3f}</li>"
        for a in exceeded
    )
    return (
        '<div class="warning" role="alert">\n'
        "<h2>WARNING: privacy claim violated</h2>\n"
        f"<ul>\n{items}\n</ul>\n"
        "<p>An empirical lower bound above the theoretical epsilon should be impossible if the model was trained with "
        "the claimed (ε, δ)-differential privacy. It indicates a <strong>bug in the DP implementation</strong> "
        "(noise, clipping, sampling or accounting) or <strong>wrong privacy metadata</strong> for this model "
        f"(ε, δ or the training recipe). δ = {result.delta:g}.</p>\n"
        "</div>"
    )


def _metric_tables(result: MiaResult) -> str:
    if not result.attacks:
        return '<h2>Attacks</h2>\n<p class="muted">No attack was run.</p>'
    sections = ["<h2>Attacks</h2>"]
    for attack in result.attacks:
        sections.append(_attack_table(attack, result))
    return "\n".join(sections)


def _attack_table(attack: AttackResult, result: MiaResult) -> str:
    m = attack.metrics
    level = _level(m)
    eps = result.theoretical_epsilon
    rows = [(f"AUC [{level} CI]", _interval(m.auc.value, m.auc.low, m.auc.high), "")]
    for t in m.tpr_at_fpr:
        label = f"TPR at {t.fpr:.1%} FPR [{level} CI]"
        if t.supported:
            rows.append((label, _interval(t.tpr, t.low, t.high), ""))
        else:
            rows.append((label, '<span class="muted">n/a: too few non-members</span>', ""))
    rows.append(("advantage (max TPR − FPR)", f"{m.advantage:.3f}", ""))
    bound = f"{m.epsilon_lower_bound:.3f}"
    theoretical = "none (trained without DP)" if eps is None else f"{eps:.3f}"
    css = ""
    if attack.name in {a.name for a in result.exceeded()}:
        bound, css = f"{bound} &gt; ε", " exceeded"
    rows.append((f"empirical ε lower bound ({level}, δ = {m.delta:g})", bound, css))
    rows.append(("theoretical ε" + (" (per record)" if result.users is not None else ""), theoretical, ""))
    if result.users is not None:
        from privaudit.report.users import group_privacy_text

        record = result.users.record_level.get(attack.name)
        if record is not None:
            at_1 = next((t for t in record.tpr_at_fpr if abs(t.fpr - 0.01) < 1e-12 and t.supported), None)
            rows.append(("per record: AUC", f"{record.auc.value:.3f}", ""))
            rows.append(("per record: TPR at 1% FPR", "n/a" if at_1 is None else f"{at_1.tpr:.3f}", ""))
            rows.append(("per record: empirical ε lower bound", f"{record.epsilon_lower_bound:.3f}", ""))
        rows.append(("group privacy, largest user", _e(group_privacy_text(result)), ""))
    body = "\n".join(f'<tr><th scope="row">{k}</th><td class="num{c}">{v}</td></tr>' for k, v, c in rows)
    params = json.dumps(attack.params, sort_keys=True, default=str) if attack.params else ""
    about = [f"<h3>{_e(attack.name)}</h3>"]
    if attack.description:
        about.append(f"<p>{_e(attack.description)}</p>")
    if params:
        about.append(f'<p class="muted">parameters: <code>{_e(params)}</code></p>')
    return "\n".join(about) + f'\n<table class="metrics">\n{body}\n</table>'


def _roc(result: MiaResult) -> str:
    if not result.attacks:
        return ""
    roc = _img(roc_figure(result.attacks), "ROC curves of all attacks, log-log axes")
    return (
        f"{roc}\n"
        '<p class="muted">Every attack\'s ROC curve on log-log axes, which show the low-FPR regime where an attack is '
        "reliable (Carlini et al. 2022); the dashed line is chance.</p>"
    )


def _histograms(result: MiaResult) -> str:
    if not result.attacks:
        return ""
    hist = _img(histogram_figure(result.attacks, result.is_member), "member and non-member score histograms")
    return (
        "<h2>Score distributions</h2>\n"
        '<p class="muted">Membership scores on members and non-members; the less they overlap, the more the model '
        "leaks.</p>\n"
        f"{hist}"
    )


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img alt="{_e(alt)}" src="data:image/png;base64,{data}"></p>'


def _interval(value: float, low: float, high: float) -> str:
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _level(metrics: AttackMetrics) -> str:
    return f"{(1 - metrics.alpha) * 100:g}%"


def _source(result: MiaResult) -> str:
    model = result.model or {}
    return str(model.get("path") or model.get("endpoint") or model.get("scores") or "precomputed scores")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


__all__ = ["write_html", "render_html", "write_document", "page", "verdict_section"]
