"""``privaudit dp-audit``: one-run epsilon lower bounds from canary scores, beside the theoretical epsilon.

The scores come from one of three places, and all go through the same analysis
(:class:`privaudit.stats.auditor.CanaryScoreAuditor`: f-DP with the (eps, delta) and the Gaussian families, and
Steinke et al.'s binomial test, on the same thresholds):

- ``--scores FILE``: JSONL, one canary a line, ``{"score": float, "inserted": 0|1}``, higher meaning "more likely
  inserted";
- ``MODEL_DIR --canaries FILE`` with the canary file of ``privaudit train --audit-canaries M``: the input-space audit
  canaries, each scored by the negative loss of its text under the model;
- ``MODEL_DIR --canaries FILE`` with a gradient-canary file: scored by
  :func:`privaudit.training.gradient_canaries.gradient_canary_scores`;
- ``MODEL_DIR --canaries FILE`` with the secret file of ``privaudit plant`` (data canaries, trained by the user's own
  pipeline): with ``--base BASE``, each scored by the movement of its own input-embedding rows from the base
  (white-box), else by its negative loss (black-box); see :mod:`privaudit.canary.data_canaries`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from privaudit import __version__
from privaudit.errors import PrivauditError
from privaudit.ranges import check_epsilon
from privaudit.stats.auditor import Bonferroni, CanaryScoreAuditor, OneRunBounds
from privaudit.stats.gaussian_fit import GaussianFitEstimate, gaussian_fit_estimate
from privaudit.textfile import json_lines

SCHEMA = "privaudit.dp-audit/1"
DEFAULT_DELTA = 1e-5
SOURCES = ("scores", "audit-canaries", "gradient-canaries", "data-canaries")
CANARY_KINDS = ("auto", "audit", "gradient", "data")


@dataclass(frozen=True)
class DpAuditRequest:
    """Everything ``privaudit dp-audit`` was asked to do.

    Attributes:
        scores: the scores file (JSONL), instead of a model.
        model_dir: the audited model directory, with ``canaries``.
        canaries: an input-space canary file (``privaudit train --audit-canaries``) or a gradient-canary file.
        canary_kind: which canaries of that file to audit: ``"audit"`` (input-space), ``"gradient"`` (white-box),
            ``"data"`` (the secret file of ``privaudit plant``), or ``"auto"``: the data canaries when the file holds
            them, else the gradient canaries when it has any (a run with both writes both), else the audit ones.
        base: with data canaries, the base model the audited one was fine-tuned from: scores them white-box by the
            movement of their embedding rows (else black-box, by their loss).
        epsilon: the theoretical epsilon (default: the model's ``privaudit.json``; none for a scores file).
        delta: delta of the bounds (default: the model's, else 1e-5).
        alpha: significance: every bound holds with confidence ``1 - alpha``.
        one_sided: guess only "in" (above each threshold); else also "out" below each, as separate rules.
        allow_pickle: load pickled weights.
        batch_size: canary texts per forward pass.
    """

    scores: Path | None = None
    model_dir: Path | None = None
    canaries: Path | None = None
    canary_kind: str = "auto"
    base: Path | None = None
    epsilon: float | None = None
    delta: float | None = None
    alpha: float = 0.05
    one_sided: bool = True
    allow_pickle: bool = False
    batch_size: int = 512


@dataclass(frozen=True)
class DpAuditResult:
    """A finished one-run audit.

    Attributes:
        model: what was audited: ``{"scores": FILE}``, or ``{"path", "fingerprint", "canaries"}``.
        source: ``"scores"``, ``"audit-canaries"``, ``"gradient-canaries"`` or ``"data-canaries"``.
        theoretical_epsilon: the claimed epsilon, ``None`` when unknown or not DP.
        delta: delta of the bounds.
        bounds: the three bounds and the audit's counts.
        seed: always 0 (the analysis draws nothing), kept for baselines.
        estimate: the equal-variance Gaussian fit of the scores, an estimate and NOT a bound (``None`` with fewer
            than two canaries on a side).
    score: for data canaries, the score used: ``"embedding-movement"`` (white-box) or ``"loss"``.
    """

    model: dict
    source: str
    theoretical_epsilon: float | None
    delta: float
    bounds: OneRunBounds
    seed: int = 0
    estimate: GaussianFitEstimate | None = None
    score: str | None = None

    def to_dict(self) -> dict:
        """The JSON document (``privaudit.dp-audit/1``), without the gate."""
        b = self.bounds
        score = {} if self.score is None else {"score": self.score}
        return {
            "schema": SCHEMA,
            "tool": {"name": "privaudit", "version": __version__},
            "seed": self.seed,
            "model": self.model,
            "source": self.source,
            **score,
            "theoretical_epsilon": self.theoretical_epsilon,
            "delta": self.delta,
            "alpha": b.alpha,
            "m": b.m,
            "n_in": b.n_in,
            "n_out": b.n_out,
            "strategy": b.strategy,
            "one_sided": b.one_sided,
            "n_hypotheses": b.n_hypotheses,
            "alpha_per_test": b.alpha_per_test,
            "bounds": {
                "eps_delta": b.eps_delta.to_dict(),
                "gaussian": b.gaussian.to_dict(),
                "steinke": b.steinke.to_dict(),
            },
            # The most these canaries can show (every inserted one above every left-out one): a claim above it
            # cannot fail the strict gate, whatever the model did.
            "reach": b.reach,
            **({"estimate": self.estimate.to_dict()} if self.estimate is not None else {}),
        }


def read_scores_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a JSONL scores file: one ``{"score": float, "inserted": 0|1}`` a line; blank lines are skipped.

    Returns:
        ``(scores, inserted)``, float64 and bool arrays of one length.

    Raises:
        PrivauditError: a missing file, a line that is not such an object (naming the file and line), no canary,
            or no inserted or no left-out canary.
    """
    path = Path(path)
    if not path.is_file():
        raise PrivauditError(f"{path}: no such scores file")
    scores: list[float] = []
    inserted: list[bool] = []
    for where, record in json_lines(path, what="scores file", hint='; each line is {"score": S, "inserted": 0|1}'):
        if not isinstance(record, dict) or "score" not in record or "inserted" not in record:
            raise PrivauditError(
                f"{where}: each line needs 'score' and 'inserted', e.g. {{\"score\": 1.5, \"inserted\": 1}}"
            )
        score, bit = record["score"], record["inserted"]
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            raise PrivauditError(f"{where}: 'score' must be a finite number, got {score!r}")
        if bit not in (0, 1) or isinstance(bit, float):
            raise PrivauditError(f"{where}: 'inserted' must be 0 or 1 (or true/false), got {bit!r}")
        scores.append(float(score))
        inserted.append(bool(bit))
    bits = np.array(inserted, dtype=bool)
    if bits.size == 0:
        raise PrivauditError(f"{path}: the scores file has no canaries")
    if bits.all() or not bits.any():
        which = "left-out" if bits.all() else "inserted"
        raise PrivauditError(
            f"{path}: no {which} canary; a one-run audit needs both (each inserted with probability 1/2)"
        )
    return np.array(scores, dtype=np.float64), bits


def canary_file_kinds(path: Path) -> set[str]:
    """Which one-run canaries a canary file holds: ``"audit"`` (records with a ``template`` of kind ``audit``),
    ``"data"`` (records of kind ``data``, from ``privaudit plant``) and ``"gradient"`` (records of kind ``gradient``,
    or without a ``template``); exposure canaries count as neither.

    Raises:
        PrivauditError: a missing or empty file, or a record that is not JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise PrivauditError(f"{path}: no such canary file")
    kinds: set[str] = set()
    seen = False
    for _, record in json_lines(path, what="canary file"):
        seen = True
        if not isinstance(record, dict):
            continue
        if record.get("kind") == "data":
            kinds.add("data")
        elif record.get("kind") == "gradient" or "template" not in record:
            kinds.add("gradient")
        elif record.get("kind") == "audit":
            kinds.add("audit")
    if not seen:
        raise PrivauditError(f"{path}: the canary file is empty")
    return kinds


def is_input_space_canary_file(path: Path) -> bool:
    """Whether ``path`` holds no gradient canaries, so that ``canary_kind="auto"`` audits its input-space ones.

    Raises:
        PrivauditError: as :func:`canary_file_kinds`.
    """
    return "gradient" not in canary_file_kinds(path)


def run_dp_audit(
    request: DpAuditRequest, *, progress: Callable[[str, int, int | None], None] | None = None
) -> DpAuditResult:
    """Score the canaries (or read their scores) and compute the three one-run bounds.

    Raises:
        PrivauditError: a bad scores or canary file, a model that cannot be loaded, no audit canaries, bad levels.
    """
    if request.scores is not None and request.model_dir is not None:
        raise PrivauditError("give --scores FILE, or MODEL_DIR with --canaries FILE (not both)")
    if request.scores is None and request.model_dir is None and request.canaries is None:
        raise PrivauditError(
            "give --scores FILE, --canaries FILE (gradient canaries), or MODEL_DIR with --canaries FILE"
        )
    if request.model_dir is not None and request.canaries is None:
        raise PrivauditError("MODEL_DIR needs --canaries FILE (audit canaries of 'privaudit train --audit-canaries')")
    if request.scores is not None and request.canaries is not None:
        raise PrivauditError("--canaries FILE goes with MODEL_DIR, not with --scores")
    eps, delta = _theoretical(request)
    kind = _kind(request) if request.scores is None else None
    if request.base is not None and kind != "data":
        raise PrivauditError("--base goes with the data canaries of 'privaudit plant' (their secret file as -c FILE)")
    score = None
    if request.scores is not None:
        scores, inserted = read_scores_file(request.scores)
        model: dict = {"scores": str(request.scores)}
        source = "scores"
    elif kind == "data":
        scores, inserted, fingerprint, score = _data_canary_scores(request, progress)
        model = {"path": str(request.model_dir), "fingerprint": fingerprint, "canaries": str(request.canaries)}
        if request.base is not None:
            model["base"] = str(request.base)
        source = "data-canaries"
    elif kind == "audit":
        if request.model_dir is None:
            raise PrivauditError(
                f"{request.canaries}: input-space audit canaries are scored on a model: give MODEL_DIR"
            )
        scores, inserted, fingerprint = _input_space_scores(request, progress)
        model = {"path": str(request.model_dir), "fingerprint": fingerprint, "canaries": str(request.canaries)}
        source = "audit-canaries"
    else:
        scores, inserted = _gradient_scores(request.canaries)
        # The record is the audit: a model directory is optional (the hook of privaudit.integrations has none).
        path = None if request.model_dir is None else str(request.model_dir)
        model = {"path": path, "fingerprint": None, "canaries": str(request.canaries)}
        source = "gradient-canaries"
    if progress is not None:
        progress("one-run analysis", 0, 1)
    bounds = CanaryScoreAuditor.from_inclusion(scores, inserted).audit(
        request.alpha, delta, Bonferroni(), one_sided=request.one_sided
    )
    inserted = np.asarray(inserted, dtype=bool)
    estimate = None
    if min(inserted.sum(), (~inserted).sum()) >= 2:
        estimate = gaussian_fit_estimate(scores, inserted, delta=delta, alpha=request.alpha)
    if progress is not None:
        progress("one-run analysis", 1, 1)
    return DpAuditResult(
        model=model,
        source=source,
        theoretical_epsilon=eps,
        delta=delta,
        bounds=bounds,
        estimate=estimate,
        score=score,
    )


def _kind(request: DpAuditRequest) -> str:
    if request.canary_kind not in CANARY_KINDS:
        raise PrivauditError(f"--canary-kind must be one of {', '.join(CANARY_KINDS)}, not '{request.canary_kind}'")
    if request.canary_kind != "auto":
        return request.canary_kind
    kinds = canary_file_kinds(request.canaries)
    if "data" in kinds:
        return "data"
    return "gradient" if "gradient" in kinds else "audit"


def _input_space_scores(request: DpAuditRequest, progress) -> tuple[np.ndarray, np.ndarray, str]:
    from privaudit.canary.canaries import read_canaries
    from privaudit.canary.targets import audit_canary_scores
    from privaudit.target import Target

    audit_set = [c for c in read_canaries(request.canaries) if c.kind == "audit"]
    if not audit_set:
        raise PrivauditError(f"{request.canaries}: no one-run audit canaries; train with --audit-canaries M")
    target = Target.load(request.model_dir, allow_pickle=request.allow_pickle)
    if progress is not None:
        progress("scoring audit canaries", 0, 1)
    scores = audit_canary_scores(target, audit_set, batch_size=request.batch_size, where=request.canaries)
    if progress is not None:
        progress("scoring audit canaries", 1, 1)
    return scores, np.array([c.inserted for c in audit_set], dtype=bool), target.fingerprint()


def _data_canary_scores(request: DpAuditRequest, progress) -> tuple[np.ndarray, np.ndarray, str, str]:
    from privaudit.canary import data_canaries as dc
    from privaudit.target import Target

    if request.model_dir is None:
        raise PrivauditError(
            f"{request.canaries}: data canaries of 'privaudit plant' are scored on the trained model: give MODEL_DIR "
            "(and --base BASE for the white-box score)"
        )
    canaries = dc.read_data_canaries(request.canaries)
    target = Target.load(request.model_dir, allow_pickle=request.allow_pickle)
    vocab_size = target.input_embeddings().weight.shape[0]
    dc.check_matches(canaries, target.tokenizer, vocab_size, where=request.canaries, model=request.model_dir)
    if request.base is None:
        if progress is not None:
            progress("scoring data canaries", 0, 1)
        scores = dc.loss_scores(target, canaries, batch_size=request.batch_size, where=request.canaries)
        score = dc.BLACK_BOX
    else:
        scores = dc.embedding_movement_scores(
            target, request.base, canaries, batch_size=request.batch_size, where=request.canaries, progress=progress
        )
        score = dc.WHITE_BOX
    inserted = np.array([c.inserted for c in canaries], dtype=bool)
    return np.asarray(scores, dtype=np.float64), inserted, target.fingerprint(), score


def _gradient_scores(canaries: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        from privaudit.training.gradient_canaries import gradient_canary_scores
    except ImportError:
        raise PrivauditError(
            f"{canaries}: not an input-space canary file, and this privaudit cannot read gradient canaries "
            "(privaudit.training.gradient_canaries is not installed)"
        ) from None
    scores, inserted = gradient_canary_scores(canaries)
    return np.asarray(scores, dtype=np.float64), np.asarray(inserted, dtype=bool)


def _theoretical(request: DpAuditRequest) -> tuple[float | None, float]:
    """The claimed epsilon and the delta of the bounds: the flags, else the model's ``privaudit.json``."""
    check_epsilon(request.epsilon, where="--epsilon")
    from privaudit.stats.accounting import epsilon_from_model

    found = None
    if request.model_dir is not None and (Path(request.model_dir) / "privaudit.json").is_file():
        found = epsilon_from_model(request.model_dir)
    eps = request.epsilon if request.epsilon is not None else (found[0] if found else None)
    delta = request.delta if request.delta is not None else (found[1] if found else DEFAULT_DELTA)
    if not 0 < delta < 1:
        raise PrivauditError(f"--delta must be in (0, 1), got {delta}")
    if not 0 < request.alpha < 0.5:
        raise PrivauditError(f"--alpha must be in (0, 0.5), got {request.alpha}")
    return eps, float(delta)
