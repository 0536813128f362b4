"""``privaudit canary``: can an attacker read planted secrets back out of the model?

Over the canary file written by ``privaudit train``, the selected extraction attacks (plugins, see
:mod:`privaudit.canary.registry`; by default the two built-ins) and the one-run audit:

- ``exposure`` (Carlini et al. 2019): the rank of each secret's loss among every candidate of its template, scored
  through the shared batched scorer (enumerated up to ``MAX_ENUMERATE`` candidates, else sampled and extrapolated);
- ``modiva`` (Parikh, Dupuy, Gupta, ACL 2022): white-box inversion of the secret from the label;
- any third-party extraction attack, whose per-canary results go under ``extraction_attacks`` in the report;
- the one-run audit (Steinke, Nasr, Jagielski 2023): an epsilon lower bound from the audit canaries' coin flips,
  with the f-DP bounds of Mahloujifar, Melis, Chaudhuri 2024 beside it (:mod:`privaudit.stats.auditor`).

The built-ins' results keep their fields of ``privaudit.canary/1``: ``exposure`` (and ``exposure_method``) from
``exposure``, ``extraction`` from ``modiva``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from privaudit import __version__
from privaudit.canary.attack import ExtractionAttack, ExtractionContext
from privaudit.canary.canaries import Canary, read_canaries
from privaudit.canary.exposure import MAX_ENUMERATE, candidates
from privaudit.canary.registry import EXTRACTION
from privaudit.canary.targets import audit_canary_scores, describe_target, load_target
from privaudit.endpoint.client import EndpointConfig
from privaudit.errors import PrivauditError
from privaudit.plugins import parse_attack_options
from privaudit.ranges import check_epsilon
from privaudit.stats.accounting import epsilon_from_model
from privaudit.stats.logits import losses

SCHEMA = "privaudit.canary/1"
# The built-ins that --exposure/--no-exposure and --extract/--no-extract switch, and the default selection.
SWITCHES = {"exposure": "--no-exposure", "modiva": "--no-extract"}


@dataclass(frozen=True)
class CanaryRequest:
    """Everything ``privaudit canary`` was asked to do.

    ``attacks`` picks the extraction attacks (``"exposure,modiva"``, ``"all"``; ``None``: exposure and modiva);
    ``exposure=False`` and ``extract=False`` take ``exposure`` and ``modiva`` out of the pick, and naming one of them in
    ``attacks`` while switching it off is an error. ``sample``, ``modiva_steps`` and ``modiva_restarts`` are the
    built-ins' parameters; ``attack_options`` (``ATTACK:PARAM=VALUE``) set any attack's, and win over them.
    """

    model_dir: Path | None
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
    attacks: str | None = None
    attack_options: tuple[str, ...] = ()
    endpoint: EndpointConfig | None = None  # score through this endpoint instead of model_dir (exposure, one-run)
    endpoint_cache: Path | None = None

    device: str = "cpu"  # auto, cpu, cuda, cuda:N, mps (privaudit.device)
    precision: str = "fp32"  # of scoring (exposure, one-run); ModIvA optimises in fp32


@dataclass
class CanaryRow:
    """One exposure canary (inserted or control) and what the attacks made of it."""

    canary: Canary
    loss: float
    exposure: float | None = None
    extraction: object | None = None  # a privaudit.canary.modiva.ModivaResult
    extraction_attacks: dict[str, dict] = field(default_factory=dict)  # third-party attack name -> its JSON result
    # The secret's rank by loss among the candidates of its space (1 = lowest loss), and how many there are: exact
    # when the space is enumerated, estimated (|space| * 2^-exposure) when extrapolated from a sample.
    exposure_rank: float | None = None
    exposure_rank_of: int | None = None

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
            "exposure_rank": self.exposure_rank,
            "exposure_rank_of": self.exposure_rank_of,
        }
        if self.extraction is not None:
            row["extraction"] = self.extraction.to_dict()
        if self.extraction_attacks:
            row["extraction_attacks"] = dict(self.extraction_attacks)
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
    one_run: object | None = None  # a privaudit.stats.onerun.OneRunResult
    one_run_bounds: object | None = None  # a privaudit.stats.auditor.OneRunBounds (f-DP and Steinke, frontier)
    candidate_losses: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    compute: dict | None = None  # device, precision, torch

    def group(self, inserted: bool) -> list[CanaryRow]:
        return [r for r in self.rows if r.canary.inserted == inserted]

    def mean_exposure(self, inserted: bool) -> float | None:
        values = [r.exposure for r in self.group(inserted) if r.exposure is not None]
        return float(np.mean(values)) if values else None

    def extracted(self, inserted: bool = True) -> int:
        """Secrets ModIvA's guess recovered exactly (the exhaustive rank 1 within its budget, else the search's)."""
        return sum(1 for r in self.group(inserted) if r.extraction is not None and r.extraction.recovered)

    def search_extracted(self, inserted: bool = True) -> int:
        """Secrets ModIvA's search alone recovered exactly, whatever the exhaustive guess found."""
        return sum(1 for r in self.group(inserted) if r.extraction is not None and r.extraction.search_recovered)

    def to_dict(self) -> dict:
        """The JSON document of ``--format json``, less the ``gate`` section that the gate's run adds.

        Its layout is ``docs/schema-canary.json``; :func:`privaudit.report.formats.report_document` adds the gate.
        """
        summary = {
            "mean_exposure_inserted": self.mean_exposure(True),
            "mean_exposure_controls": self.mean_exposure(False),
            "max_exposure_inserted": max(
                (r.exposure for r in self.group(True) if r.exposure is not None), default=None
            ),
            "extracted_inserted": self.extracted(True),
            "extracted_controls": self.extracted(False),
            "search_extracted_inserted": self.search_extracted(True),
            "search_extracted_controls": self.search_extracted(False),
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
            "one_run_bounds": None if self.one_run_bounds is None else self.one_run_bounds.to_dict(),
            "compute": self.compute,
        }


def run_canary(request: CanaryRequest, *, progress: Callable[[str, int, int | None], None] | None = None):
    """Run a canary audit.

    Raises:
        PrivauditError: bad canary file, labels the model lacks, alphabets the tokenizer splits, too large spaces; an
            unknown or broken extraction attack, a bad parameter, or an attack the target cannot serve (before any
            work).
    """
    from privaudit.device import Compute

    def tell(stage: str, done: int, total: int | None) -> None:
        if progress is not None:
            progress(stage, done, total)

    attacks = build_attacks(request)
    compute = Compute.from_flags(request.device, request.precision)
    records = read_canaries(request.canaries)
    exposure_set = [c for c in records if c.kind == "exposure"]
    audit_set = [c for c in records if c.kind == "audit"]
    if request.one_run and not audit_set:
        raise PrivauditError(f"{request.canaries}: no one-run audit canaries; train with --audit-canaries M")
    target = load_target(request, attacks, exposure_set, audit_set, compute=compute)
    for attack in attacks:
        attack.check(target)
    texts = [c.text for c in exposure_set]
    # Scored before the labels are checked: an endpoint names its classes in its first answer.
    own_logits = target.logits(texts) if texts else None
    for c in records:
        if c.label not in target.label2id:
            where = request.model_dir or request.endpoint.url
            raise PrivauditError(f"{request.canaries}: canary label '{c.label}' is not a label of {where}")
    eps, delta = _theoretical(request)
    own = losses(own_logits, np.array([target.label2id[c.label] for c in exposure_set])) if texts else []
    rows = [CanaryRow(canary=c, loss=float(loss)) for c, loss in zip(exposure_set, own)]
    context = ExtractionContext(seed=request.seed, batch_size=request.batch_size, progress=progress)
    method, candidate_losses = _extract(attacks, target, rows, context) if rows else (None, {})
    one_run = one_run_bounds = None
    if request.one_run:
        from privaudit.stats.auditor import CanaryScoreAuditor
        from privaudit.stats.onerun import one_run_audit

        tell("one-run audit", 0, 1)
        scores = audit_canary_scores(target, audit_set, batch_size=request.batch_size, where=request.canaries)
        inserted = np.array([c.inserted for c in audit_set], dtype=bool)
        one_run = one_run_audit(scores, inserted, delta=delta)
        if inserted.any() and not inserted.all() and 0 < delta < 1:
            # The f-DP bounds and Steinke's on the Pareto frontier of thresholds, as `privaudit dp-audit` reports them
            # (the Gaussian family's eps needs delta > 0).
            one_run_bounds = CanaryScoreAuditor.from_inclusion(scores, inserted).audit(one_run.p, delta)
        tell("one-run audit", 1, 1)
    return CanaryResult(
        model={**describe_target(target, request), "canaries": str(request.canaries)},
        seed=request.seed,
        theoretical_epsilon=eps,
        delta=delta,
        rows=rows,
        exposure_method=method,
        one_run=one_run,
        one_run_bounds=one_run_bounds,
        candidate_losses=candidate_losses,
        compute=compute.to_dict(),
    )


def selected_attacks(request: CanaryRequest) -> list[str]:
    """The extraction attacks a request runs: ``attacks`` (default exposure and modiva) less those switched off.

    Raises:
        PrivauditError: for an unknown attack, or one that ``attacks`` names and a switch turns off.
    """
    off = {name for name, on in (("exposure", request.exposure), ("modiva", request.extract)) if not on}
    if request.attacks is None:
        return [name for name in SWITCHES if name not in off]
    names = EXTRACTION.resolve(request.attacks)
    named = {token.strip() for token in request.attacks.split(",")}
    clash = [name for name in SWITCHES if name in off and name in named]
    if clash:
        raise PrivauditError(
            f"--attack names '{clash[0]}', which {SWITCHES[clash[0]]} turns off; give one or the other"
        )
    return [name for name in names if name not in off]


def build_attacks(request: CanaryRequest) -> list[ExtractionAttack]:
    """The selected extraction attacks with their parameters, built (and plugins imported) before any work.

    Raises:
        PrivauditError: for an unknown or broken attack, an option for an attack not selected, or an unknown parameter.
    """
    names = selected_attacks(request)
    options = parse_attack_options(request.attack_options)
    stray = sorted(set(options) - set(names))
    if stray:
        raise PrivauditError(
            f"--attack-option for {', '.join(map(repr, stray))}, which is not selected; "
            f"selected: {', '.join(names) or 'none'}"
        )
    defaults: dict[str, dict[str, Any]] = {
        "exposure": {"sample": request.sample},
        "modiva": {"steps": request.modiva_steps, "restarts": request.modiva_restarts},
    }
    return [EXTRACTION.create(name, **{**defaults.get(name, {}), **options.get(name, {})}) for name in names]


def _extract(
    attacks: list[ExtractionAttack], target, rows: list[CanaryRow], context: ExtractionContext
) -> tuple[str | None, dict[str, np.ndarray]]:
    """Run each attack on the rows' canaries and file its results; returns the exposure method and candidate losses.

    The built-ins' results keep their ``privaudit.canary/1`` fields; any other attack's go to ``extraction_attacks``.
    """
    method, candidate_losses = None, {}
    for attack in attacks:
        results = list(attack.extract(target, [row.canary for row in rows], context))
        if len(results) != len(rows):
            raise PrivauditError(
                f"extraction attack '{attack.name}' returned {len(results)} results for {len(rows)} canaries"
            )
        for row, found in zip(rows, results):
            if attack.name == "exposure":
                row.exposure, row.loss, method = found.exposure, found.loss, found.method
                row.exposure_rank, row.exposure_rank_of = found.rank, found.rank_of
                candidate_losses[_loss_key(row.canary)] = found.candidate_losses
            elif attack.name == "modiva":
                row.extraction = found
            else:
                row.extraction_attacks[attack.name] = _as_json(attack.name, found)
    return method, candidate_losses


def _as_json(name: str, found: Any) -> dict:
    """A third-party attack's result for one canary as a JSON object (dict, dataclass, or anything with to_dict)."""
    if hasattr(found, "to_dict"):
        found = found.to_dict()
    elif dataclasses.is_dataclass(found) and not isinstance(found, type):
        found = dataclasses.asdict(found)
    if not isinstance(found, dict):
        raise PrivauditError(
            f"extraction attack '{name}' returned a {type(found).__name__} for a canary; "
            "return a dict, a dataclass or an object with to_dict()"
        )

    def plain(value: Any) -> Any:
        if isinstance(value, np.generic | np.ndarray):
            return value.tolist()
        if isinstance(value, tuple | set | frozenset):
            return list(value)
        raise TypeError(f"{type(value).__name__} is not JSON")

    try:
        return json.loads(json.dumps(found, default=plain))
    except (TypeError, ValueError) as err:
        raise PrivauditError(f"extraction attack '{name}' returned a result that is not JSON: {err}") from None


def _loss_key(c: Canary) -> str:
    return f"{c.template} -> {c.label}"


def _theoretical(request: CanaryRequest) -> tuple[float | None, float]:
    check_epsilon(request.epsilon, where="--epsilon")
    if request.epsilon is not None:
        return request.epsilon, request.delta if request.delta is not None else 1e-5
    has_recipe = request.model_dir is not None and (request.model_dir / "privaudit.json").is_file()
    found = epsilon_from_model(request.model_dir) if has_recipe else None
    if found is None:
        return None, request.delta if request.delta is not None else 1e-5
    return found[0], request.delta if request.delta is not None else found[1]


__all__: Sequence[str] = [
    "MAX_ENUMERATE",
    "CanaryRequest",
    "CanaryResult",
    "audit_canary_scores",
    "build_attacks",
    "candidates",
    "run_canary",
    "selected_attacks",
]
