"""``sweep.html``: a privacy sweep as one self-contained page: the points' table and four plots against epsilon.

Takes the plain ``sweep.json`` document (:meth:`privaudit.sweep.run.SweepResult.to_dict`), never the models. The
plots: the empirical epsilon (the best attack's 95% lower bound, its bar reaching the 50% bound; with gradient
canaries, the white-box f-DP strict bound as a square) against the theoretical epsilon, with the diagonal a correct DP implementation never crosses; utility, TPR at 1% FPR and canary
exposure against epsilon. The no-DP point sits at the right of every axis, marked "no DP".
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from privaudit.report.html import _e, _img, page, write_document
from privaudit.report.plots import _figure, _plain, _png


def _x(points: list[dict]) -> tuple[list[float], list[float], list[str]]:
    """Each point's x position (its theoretical epsilon; the no-DP point at twice the largest), ticks and labels."""
    finite = [p["epsilon"] for p in points if p["epsilon"] is not None]
    right = 2 * max(finite) if finite else 1.0
    xs = [p["epsilon"] if p["epsilon"] is not None else right for p in points]
    ticks = sorted(set(xs))
    labels = ["no DP" if t == right and any(p["epsilon"] is None for p in points) else f"{t:.3g}" for t in ticks]
    return xs, ticks, labels


def _axes(points: list[dict], title: str, ylabel: str):
    fig = _figure(5.6, 4.0)
    ax = fig.add_subplot()
    _, ticks, labels = _x(points)
    ax.set_xscale("log")
    ax.set_xticks(ticks, labels)
    ax.minorticks_off()
    ax.set_xlabel("theoretical ε (accountant)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, color="0.9", linewidth=0.8)
    return fig, ax


def _order(points: list[dict]) -> list[dict]:
    return sorted(points, key=lambda p: math.inf if p["epsilon"] is None else p["epsilon"])


def epsilon_figure(points: list[dict]) -> bytes:
    """Empirical epsilon against theoretical epsilon, the diagonal drawn."""
    points = _order(points)
    per_user = any(p.get("users") for p in points)
    title = "empirical (per user) against theoretical ε" if per_user else "empirical against theoretical ε"
    fig, ax = _axes(points, title, "empirical ε per user" if per_user else "empirical ε")
    xs, _, _ = _x(points)
    finite = [p["epsilon"] for p in points if p["epsilon"] is not None]
    if finite:  # the diagonal over the DP points only: the no-DP point claims nothing
        lo, hi = min(finite) / 1.2, max(finite) * 1.2
        ax.plot([lo, hi], [lo, hi], "--", color="0.5", label="empirical = theoretical")
    for x, p in zip(xs, points):
        emp = p.get("empirical_epsilon")
        if not emp:
            continue
        low, top = emp["lower_bound"] or 0.0, emp["median"] or 0.0
        claim = p["epsilon"]
        if p.get("users") is not None:  # a per-user bound breaks only a group guarantee that holds (δ < 1)
            group = p["users"]["group_privacy"]
            claim = None if group is None or group["vacuous"] else group["epsilon"]
        color = "#c0392b" if claim is not None and low > claim else "#2c7fb8"
        ax.errorbar([x], [low], yerr=[[0.0], [max(top - low, 0.0)]], fmt="o", color=color, capsize=4)
        ax.annotate(_plain(emp["attack"]), (x, low), textcoords="offset points", xytext=(6, -10), fontsize="x-small")
    grouped = [
        (x, p["users"]["group_privacy"]) for x, p in zip(xs, points) if (p.get("users") or {}).get("group_privacy")
    ]
    grouped = [(x, g) for x, g in grouped if g["epsilon"] is not None]
    if grouped:  # --group-by: the bounds are per user; their theory is the largest user's group-privacy epsilon
        ax.plot(
            [x for x, _ in grouped],
            [g["epsilon"] for _, g in grouped],
            ":",
            marker="^",
            color="0.3",
            label=f"group privacy k·ε (k = {grouped[0][1]['k']}; open: δ ≥ 1)",
        )
        vacuous = [(x, g) for x, g in grouped if g["vacuous"]]
        ax.scatter(
            [x for x, _ in vacuous],
            [g["epsilon"] for _, g in vacuous],
            marker="^",
            facecolors="white",
            edgecolors="0.3",
            zorder=3,
        )
    white = [(x, p) for x, p in zip(xs, points) if p.get("white_box")]
    if white:  # the tightest strict bound: the gradient canaries' (eps, delta)-family f-DP bound
        colors = ["#c0392b" if p["white_box"]["eps_delta"] > p["epsilon"] else "#1a9850" for _, p in white]
        ax.scatter(
            [x for x, _ in white],
            [p["white_box"]["eps_delta"] for _, p in white],
            marker="s",
            c=colors,
            zorder=3,
            label="white-box f-DP (ε, δ), strict",
        )
    ax.set_yscale("symlog", linthresh=0.1)
    ax.legend(loc="upper left", fontsize="small")
    return _png(fig)


def utility_figure(points: list[dict]) -> bytes:
    """Accuracy and macro-F1 on the non-members against epsilon."""
    points = _order(points)
    fig, ax = _axes(points, "utility on the non-members", "score")
    xs, _, _ = _x(points)
    for key, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
        ax.plot(xs, [p["utility"][key] for p in points], "o-", label=label)
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize="small")
    return _png(fig)


def tpr_figure(points: list[dict]) -> bytes:
    """Each attack's TPR at 1% FPR against epsilon, with Clopper-Pearson intervals; chance (1%) dashed."""
    points = _order(points)
    fig, ax = _axes(points, "TPR at 1% FPR", "TPR at 1% FPR")
    xs, ticks, _ = _x(points)
    names = sorted({a["name"] for p in points for a in p["attacks"]})
    for name in names:
        xv, yv, lo, hi = [], [], [], []
        for x, p in zip(xs, points):
            hit = next((a["tpr_at_1%fpr"] for a in p["attacks"] if a["name"] == name), None)
            if hit is None or hit["tpr"] is None:
                continue
            xv.append(x)
            yv.append(hit["tpr"])
            lo.append(hit["tpr"] - hit["low"])
            hi.append(hit["high"] - hit["tpr"])
        if xv:
            ax.errorbar(xv, yv, yerr=[lo, hi], fmt="o-", capsize=3, label=_plain(name))
    ax.axhline(0.01, linestyle="--", color="0.6", linewidth=1.0, label="chance (1%)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize="small")
    return _png(fig)


def exposure_figure(points: list[dict]) -> bytes:
    """Mean canary exposure of inserted canaries and of controls against epsilon (a note when none were planted)."""
    points = _order(points)
    fig, ax = _axes(points, "canary exposure", "exposure (bits)")
    xs, _, _ = _x(points)
    with_canaries = [(x, p["canaries"]) for x, p in zip(xs, points) if p.get("canaries")]
    if not with_canaries:
        ax.text(0.5, 0.5, "no canaries planted", ha="center", va="center", transform=ax.transAxes)
        return _png(fig)
    for key, label in (("mean_exposure_inserted", "inserted (mean)"), ("mean_exposure_controls", "controls (mean)")):
        pairs = [(x, c[key]) for x, c in with_canaries if c.get(key) is not None]
        if pairs:
            ax.plot(*zip(*pairs), "o-", label=label)
    top = with_canaries[0][1]["log2_space"]
    ax.axhline(top, linestyle="--", color="0.6", linewidth=1.0, label="rank 1 (log2 |space|)")
    ax.set_ylim(0, top * 1.05)
    ax.legend(loc="upper left", fontsize="small")
    return _png(fig)


def _fmt(value: object, spec: str = ".3f") -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not np.isfinite(value):
        return "—"
    return format(value, spec) if isinstance(value, int | float) else str(value)


def _table(document: dict) -> str:
    head = [
        "point",
        "target ε",
        "theoretical ε",
        "noise",
        "accuracy",
        "macro-F1",
        "best attack",
        "AUC",
        "TPR@1%FPR [95% CI]",
        "empirical ε ≥ (95%)",
        "exposure (inserted)",
        "one-run ε ≥",
        "white-box ε ≥ (strict)",
        "white-box ε ≥ (Gaussian*)",
    ]
    rows = []
    for p in _order(document["points"]):
        best = p.get("empirical_epsilon") or {}
        attack = next((a for a in p["attacks"] if a["name"] == best.get("attack")), None)
        tpr = attack["tpr_at_1%fpr"] if attack else None
        cells = [
            _e(p["name"]),
            "∞" if p["target_epsilon"] is None else _fmt(p["target_epsilon"], "g"),
            "none (no DP)" if p["epsilon"] is None else _fmt(p["epsilon"]),
            _fmt(p["noise_multiplier"], ".3f"),
            _fmt(p["utility"]["accuracy"], ".1%"),
            _fmt(p["utility"]["macro_f1"], ".3f"),
            _e(best.get("attack", "—")),
            _fmt(attack["auc"]["value"]) if attack else "—",
            "—" if not tpr or tpr["tpr"] is None else f"{tpr['tpr']:.1%} [{tpr['low']:.1%}, {tpr['high']:.1%}]",
            _fmt(best.get("lower_bound")),
            _fmt((p.get("canaries") or {}).get("mean_exposure_inserted"), ".2f"),
            _fmt((p.get("one_run") or {}).get("epsilon_lower_bound")),
            _fmt((p.get("white_box") or {}).get("eps_delta")),
            _fmt((p.get("white_box") or {}).get("gaussian")),
        ]
        rows.append("<tr>" + "".join(f'<td class="num">{c}</td>' for c in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"
    return f'<table class="metrics">\n{header}\n' + "\n".join(rows) + "\n</table>"


def render_sweep_html(document: dict, *, title: str | None = None) -> str:
    """The ``sweep.html`` page for a ``sweep.json`` document."""
    points = document["points"]
    page_title = title or f"privaudit privacy sweep: {document['data']}"
    about = (
        f"<p>Recipe trained at each target ε on <code>{_e(document['data'])}</code>; utility and the membership "
        f"audit's non-members from <code>{_e(document['non_members'])}</code>; attacks "
        f"<code>{_e(document['attacks'])}</code> with {_e(document['reference_models'])} reference models per point, "
        "each trained with that point's recipe (DP included).</p>"
    )
    figures = [
        ("Empirical against theoretical ε", epsilon_figure(points), "empirical epsilon against theoretical epsilon"),
        ("Utility", utility_figure(points), "accuracy and macro-F1 against epsilon"),
        ("Membership inference", tpr_figure(points), "TPR at 1% FPR against epsilon"),
        ("Canary exposure", exposure_figure(points), "canary exposure against epsilon"),
    ]
    body = ["<h2>Points</h2>", about, _table(document)]
    for heading, png, alt in figures:
        body += [f"<h2>{_e(heading)}</h2>", _img(png, alt)]
    body.append(
        '<p class="muted">The empirical ε is the best attack\'s lower bound at 95% confidence; its bar reaches the '
        "50% bound. Above the diagonal it would contradict the DP claim: a bug in the training or wrong metadata. "
        "The squares, with gradient canaries, are the white-box f-DP one-run audit's strict (ε, δ)-family bound; "
        "*the Gaussian-family bound in the table assumes the mechanism's trade-off curve is Gaussian.</p>"
    )
    return page(page_title, body)


def write_sweep_html(document: dict, path: Path, *, title: str | None = None) -> None:
    """Write ``sweep.html`` atomically.

    Raises:
        PrivauditError: if the file cannot be written.
    """
    write_document(render_sweep_html(document, title=title), path)


__all__ = ["render_sweep_html", "write_sweep_html", "epsilon_figure", "utility_figure", "tpr_figure", "exposure_figure"]
