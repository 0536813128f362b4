"""Figures for the HTML reports, as PNG bytes: ROC curves, score histograms, canary candidate losses.

Each function builds a :class:`matplotlib.figure.Figure` on an explicit Agg canvas, so pyplot's global figure
registry and the user's backend are never touched, and nothing has to be closed. The PNG carries no software
or time stamp, so the same input gives the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from privaudit.errors import PrivauditError
from privaudit.mia.run import AttackResult

# Carlini et al. 2022 plot down to FPR 1e-5 for their 25k non-members; 1e-3 is where a few thousand leave off.
_FPR_FLOOR = 1e-3
_DPI = 110
_HIST_BINS = 40
_MEMBER_COLOR = "#c0392b"
_NON_MEMBER_COLOR = "#2c7fb8"


def roc_figure(attacks: Sequence[AttackResult]) -> bytes:
    """ROC curves of every attack on one log-log plot, as in Carlini et al. 2022 (Fig. 1).

    The axes run from ``min(1e-3, 1 / n_non_members)`` to 1: 1e-3 is the usual floor, and larger audits resolve
    lower FPRs. Points at FPR or TPR 0 are drawn at that floor, so the left edge shows the TPR an attack reaches
    with no false positive at all. The dashed diagonal is a chance-level attack.

    Args:
        attacks: the attacks to draw, each with ``name`` and ``metrics`` (``roc_fpr``, ``roc_tpr``, ``auc``,
            ``n_non_members``).

    Returns:
        PNG bytes.

    Raises:
        PrivauditError: if ``attacks`` is empty.
    """
    if not attacks:
        raise PrivauditError("roc_figure needs at least one attack")
    n_out = max(a.metrics.n_non_members for a in attacks)
    floor = min(_FPR_FLOOR, 1.0 / max(n_out, 1))
    fig = _figure(5.6, 5.0)
    ax = fig.add_subplot()
    ax.plot([floor, 1.0], [floor, 1.0], linestyle="--", color="0.6", linewidth=1.0, label="chance (AUC 0.5)")
    for attack in attacks:
        fpr = np.clip(np.asarray(attack.metrics.roc_fpr, dtype=np.float64), floor, 1.0)
        tpr = np.clip(np.asarray(attack.metrics.roc_tpr, dtype=np.float64), floor, 1.0)
        ax.plot(fpr, tpr, linewidth=1.6, label=f"{_plain(attack.name)} (AUC {attack.metrics.auc.value:.3f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(floor, 1.0)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title("ROC, log-log")
    ax.grid(True, which="major", color="0.9", linewidth=0.8)
    ax.legend(loc="lower right", fontsize="small", frameon=True)
    return _png(fig)


def histogram_figure(attacks: Sequence[AttackResult], is_member: np.ndarray) -> bytes:
    """Per attack, the distribution of its scores on members and on non-members; one small panel each.

    Both groups share an attack's bins and are drawn as densities, so unequal group sizes do not hide the gap
    between them. Scores that are not finite are left out.

    Args:
        attacks: the attacks to draw, each with ``name`` and ``scores`` of shape ``(n,)``.
        is_member: ground truth, shape ``(n,)``, bool or 0/1.

    Returns:
        PNG bytes.

    Raises:
        PrivauditError: if ``attacks`` is empty or a score array does not match ``is_member``.
    """
    if not attacks:
        raise PrivauditError("histogram_figure needs at least one attack")
    member = np.asarray(is_member).astype(bool)
    ncols = min(3, len(attacks))
    nrows = math.ceil(len(attacks) / ncols)
    fig = _figure(3.6 * ncols, 2.8 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, attack in zip(axes.flat, attacks):
        scores = np.asarray(attack.scores, dtype=np.float64)
        if scores.shape != member.shape:
            raise PrivauditError(
                f"attack {attack.name}: {scores.size} scores for {member.size} examples; they must match"
            )
        finite = np.isfinite(scores)
        edges = np.histogram_bin_edges(scores[finite], bins=_HIST_BINS) if finite.any() else _HIST_BINS
        for group, color, label in ((~member, _NON_MEMBER_COLOR, "non-members"), (member, _MEMBER_COLOR, "members")):
            values = scores[group & finite]
            if values.size:
                ax.hist(values, bins=edges, density=True, histtype="stepfilled", alpha=0.45, color=color, label=label)
        ax.set_title(_plain(attack.name), fontsize="medium")
        ax.set_xlabel("membership score", fontsize="small")
        ax.set_ylabel("density", fontsize="small")
        ax.tick_params(labelsize="small")
        ax.legend(fontsize="x-small")
    for ax in axes.flat[len(attacks) :]:
        ax.set_visible(False)
    return _png(fig)


def candidate_loss_figure(candidate_losses: np.ndarray, secret_loss: float, title: str) -> bytes:
    """Histogram of a canary template's loss over all candidate secrets, with the true secret's loss marked.

    The count axis is logarithmic: a memorised secret sits in the sparse low-loss tail, which a linear axis
    flattens to nothing (Carlini et al. 2019, "The Secret Sharer", Fig. 2).

    Args:
        candidate_losses: the model's loss on every candidate secret, shape ``(n,)``.
        secret_loss: the loss on the secret that was (or would have been) planted.
        title: the panel title, e.g. the canary template; drawn as plain text.

    Returns:
        PNG bytes.

    Raises:
        PrivauditError: if there is no finite candidate loss.
    """
    losses = np.asarray(candidate_losses, dtype=np.float64).ravel()
    losses = losses[np.isfinite(losses)]
    if losses.size == 0:
        raise PrivauditError("candidate_loss_figure needs at least one finite candidate loss")
    fig = _figure(5.6, 3.6)
    ax = fig.add_subplot()
    ax.hist(losses, bins=_HIST_BINS, log=True, color=_NON_MEMBER_COLOR, alpha=0.7, label="candidate secrets")
    ax.axvline(float(secret_loss), color=_MEMBER_COLOR, linewidth=2.0, label=f"true secret (loss {secret_loss:.3g})")
    ax.set_xlabel("loss")
    ax.set_ylabel("candidates")
    ax.set_title(_plain(title), fontsize="medium")
    ax.legend(fontsize="small")
    return _png(fig)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)  # explicit Agg, whatever backend pyplot would pick
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # No "Software" stamp: identical figures give identical bytes.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _plain(text: str) -> str:
    """Text drawn as typed: a ``$`` in a user's name would otherwise start matplotlib mathtext."""
    return str(text).replace("$", r"\$")


__all__ = ["roc_figure", "histogram_figure", "candidate_loss_figure"]
