"""``privaudit canary``: can an attacker read planted secrets back out of the model?

Three measures over the canary file written by ``privaudit train``:

- exposure (Carlini et al. 2019): the rank of each secret's loss among every candidate of its template, scored through
  the shared batched scorer (enumerated up to ``MAX_ENUMERATE`` candidates, else sampled and extrapolated);
- ModIvA extraction (Parikh, Dupuy, Gupta, ACL 2022): white-box inversion of the secret from the label;
- the one-run audit (Steinke, Nasr, Jagielski 2023): an epsilon lower bound from the audit canaries' coin flips.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from privaudit import __version__
from privaudit.canary.canaries import Canary, fill, read_canaries
from privaudit.canary.exposure import exposure_by_extrapolation, exposures
from privaudit.errors import PrivauditError
from privaudit.stats.accounting import epsilon_from_model
from privaudit.stats.logits import log_softmax, losses

SCHEMA = "privaudit.canary/1"
MAX_ENUMERATE = 1_000_000


@dataclass(frozen=True)
class CanaryRequest:
    """Everything ``privaudit canary`` was asked to do."""

    model_dir: Path
    canaries: Path
    exposure: bool = True
    extract: bool = True
    one_run: bool = False
    sample: int | None = None
    seed: int = 0
    epsilon: float | None = None
    delta: float | None = None
    allow_pickle: bool = False
    batch_size: int = 512
    modiva_steps: int = 300
    modiva_restarts: int = 16
    device: str = "cpu"  # auto, cpu, cuda, cuda:N, mps (privaudit.device)
    precision: str = "fp32"  # of scoring (exposure, one-run); ModIvA optimises in fp32


@dataclass
class CanaryRow:
    """One exposure canary (inserted or control) and what the attacks made of it."""

    canary: Canary
    loss: float
    exposure: float | None = None
    extraction: object | None = None  # a privaudit.canary.modiva.ModivaResult

    def to_dict(self) -> dict:
        c = self.canary
        row = {
            "text": c.text,
            "template": c.template,
            "secret": list(c.secret),
            "label": c.label,
            "inserted": c.inserted,
            "repeats": c.repeats,
            "loss": self.loss,
            "exposure": self.exposure,
        }
        if self.extraction is not None:
            row["extraction"] = self.extraction.to_dict()
        return row


@dataclass
class CanaryResult:
    """A whole canary audit."""

    model: dict
    seed: int
    theoretical_epsilon: float | None
    delta: float
    rows: list[CanaryRow]
    exposure_method: str | None
    one_run: object | None = None  # a privaudit.canary.onerun.OneRunResult
    candidate_losses: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    compute: dict | None = None  # device, precision, torch

    def group(self, inserted: bool) -> list[CanaryRow]:
        return [r for r in self.rows if r.canary.inserted == inserted]

    def mean_exposure(self, inserted: bool) -> float | None:
        values = [r.exposure for r in self.group(inserted) if r.exposure is not None]
        return float(np.mean(values)) if values else None

    def extracted(self, inserted: bool = True) -> int:
        return sum(1 for r in self.group(inserted) if r.extraction is not None and r.extraction.recovered)

    def to_dict(self) -> dict:
        summary = {
            "mean_exposure_inserted": self.mean_exposure(True),
            "mean_exposure_controls": self.mean_exposure(False),
            "max_exposure_inserted": max(
                (r.exposure for r in self.group(True) if r.exposure is not None), default=None
            ),
            "extracted_inserted": self.extracted(True),
            "extracted_controls": self.extracted(False),
            "n_inserted": len(self.group(True)),
            "n_controls": len(self.group(False)),
        }
        return {
            "schema": SCHEMA,
            "tool": {"name": "privaudit", "version": __version__},
            "seed": self.seed,
            "model": self.model,
            "theoretical_epsilon": self.theoretical_epsilon,
            "delta": self.delta,
            "exposure_method": self.exposure_method,
            "summary": summary,
            "canaries": [r.to_dict() for r in self.rows],
            "one_run": None if self.one_run is None else self.one_run.to_dict(),
            "compute": self.compute,
        }


def candidates(canary: Canary) -> tuple[list[str], int]:
    """Every secret of the canary's template, as texts, in a fixed order, and the space size."""
    space = int(np.prod([len(a) for a in canary.alphabets], dtype=np.float64))
    return [fill(canary.template, values) for values in itertools.product(*canary.alphabets)], space


def _group_key(c: Canary) -> tuple:
    return (c.template, c.alphabets)


def _loss_key(c: Canary) -> str:
    return f"{c.template} -> {c.label}"


def _candidate_log_probs(target, canary: Canary, *, sample: int | None, rng, batch_size: int):
    """Log-probabilities of every label for every candidate of the template (or a sample of them)."""
    space = int(np.prod([len(a) for a in canary.alphabets], dtype=np.float64))
    if space <= MAX_ENUMERATE and sample is None:
        texts, _ = candidates(canary)
        method = "rank"
    else:
        if sample is None:
            raise PrivauditError(
                f"canary template '{canary.template}' has {space:.3g} candidates, too many to enumerate "
                f"(limit {MAX_ENUMERATE:.0e}); pass --sample N to extrapolate from N random candidates"
            )
        sizes = [len(a) for a in canary.alphabets]
        draws = rng.integers(0, sizes, size=(sample, len(sizes)))
        texts = [fill(canary.template, [a[i] for a, i in zip(canary.alphabets, row)]) for row in draws]
        method = "extrapolation"
    return log_softmax(target.logits(texts, batch_size=batch_size)), method, space


def run_canary(request: CanaryRequest, *, progress: Callable[[str, int, int | None], None] | None = None):
    """Run a canary audit.

    Raises:
        PrivauditError: bad canary file, labels the model lacks, alphabets the tokenizer splits, too large spaces.
    """
    from privaudit.device import Compute
    from privaudit.target import Target

    def tell(stage: str, done: int, total: int | None) -> None:
        if progress is not None:
            progress(stage, done, total)

    compute = Compute.from_flags(request.device, request.precision)
    target = Target.load(request.model_dir, allow_pickle=request.allow_pickle, compute=compute)
    records = read_canaries(request.canaries)
    for c in records:
        if c.label not in target.label2id:
            raise PrivauditError(f"{request.canaries}: canary label '{c.label}' is not a label of {request.model_dir}")
    rng = np.random.default_rng(request.seed)
    eps, delta = _theoretical(request)
    exposure_set = [c for c in records if c.kind == "exposure"]
    audit_set = [c for c in records if c.kind == "audit"]
    if request.one_run and not audit_set:
        raise PrivauditError(f"{request.canaries}: no one-run audit canaries; train with --audit-canaries M")
    texts = [c.text for c in exposure_set]
    own = losses(target.logits(texts), np.array([target.label2id[c.label] for c in exposure_set])) if texts else []
    rows = [CanaryRow(canary=c, loss=float(loss)) for c, loss in zip(exposure_set, own)]
    method = None
    candidate_losses: dict[str, np.ndarray] = {}
    if request.exposure and rows:
        # One scoring pass per template: every label's candidate losses come from the same logits.
        groups: dict[tuple, list[CanaryRow]] = {}
        for row in rows:
            groups.setdefault(_group_key(row.canary), []).append(row)
        for g, members in enumerate(groups.values()):
            tell("exposure", g, len(groups))
            logp, method, space = _candidate_log_probs(
                target, members[0].canary, sample=request.sample, rng=rng, batch_size=request.batch_size
            )
            for row in members:
                cand = -logp[:, target.label2id[row.canary.label]]
                candidate_losses[_loss_key(row.canary)] = cand
                if method == "rank":
                    # The enumerated space holds the secret itself; rank it among the others (Carlini et al. 2019,
                    # sec. 4), reading its loss from the same pass so that batch composition cannot shift it.
                    i = _candidate_index(row.canary)
                    row.loss = float(cand[i])
                    row.exposure = float(exposures(cand[[i]], np.delete(cand, i))[0])
                else:
                    row.exposure = float(exposure_by_extrapolation(row.loss, cand, space_size=space))
        tell("exposure", len(groups), len(groups))
    if request.extract and rows:
        from privaudit.canary.modiva import ModivaConfig, extract_all

        config = ModivaConfig(steps=request.modiva_steps, restarts=request.modiva_restarts, seed=request.seed)
        done = [0]

        def one_done(_result) -> None:
            done[0] += 1
            tell("ModIvA extraction", done[0], len(rows))

        tell("ModIvA extraction", 0, len(rows))
        for row, extraction in zip(
            rows, extract_all(target, [r.canary for r in rows], config=config, on_canary=one_done)
        ):
            row.extraction = extraction
        tell("ModIvA extraction", len(rows), len(rows))
    one_run = None
    if request.one_run:
        from privaudit.canary.onerun import one_run_audit

        tell("one-run audit", 0, 1)
        audit_losses = losses(
            target.logits([c.text for c in audit_set], batch_size=request.batch_size),
            np.array([target.label2id[c.label] for c in audit_set]),
        )
        one_run = one_run_audit(-audit_losses, np.array([c.inserted for c in audit_set]), delta=delta)
        tell("one-run audit", 1, 1)
    return CanaryResult(
        model={"path": str(request.model_dir), "fingerprint": target.fingerprint(), "canaries": str(request.canaries)},
        seed=request.seed,
        theoretical_epsilon=eps,
        delta=delta,
        rows=rows,
        exposure_method=method,
        one_run=one_run,
        candidate_losses=candidate_losses,
        compute=compute.to_dict(),
    )


def _candidate_index(canary: Canary) -> int:
    """Position of the canary's secret in :func:`candidates` order (mixed radix over the slot alphabets)."""
    index = 0
    for value, alphabet in zip(canary.secret, canary.alphabets):
        index = index * len(alphabet) + alphabet.index(value)
    return index


def _theoretical(request: CanaryRequest) -> tuple[float | None, float]:
    if request.epsilon is not None:
        return request.epsilon, request.delta if request.delta is not None else 1e-5
    found = epsilon_from_model(request.model_dir) if (request.model_dir / "privaudit.json").is_file() else None
    if found is None:
        return None, request.delta if request.delta is not None else 1e-5
    return found[0], request.delta if request.delta is not None else found[1]


__all__: Sequence[str] = ["CanaryRequest", "CanaryResult", "run_canary", "candidates"]
