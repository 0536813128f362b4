"""The target a canary audit scores: the model directory or an endpoint, and the one-run scores of audit canaries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from privaudit.canary.attack import ExtractionAttack
from privaudit.canary.canaries import Canary
from privaudit.canary.exposure import MAX_ENUMERATE, candidates
from privaudit.errors import PrivauditError
from privaudit.stats.logits import losses


def audit_canary_scores(target, canaries: Sequence[Canary], *, batch_size: int, where: Path | str) -> np.ndarray:
    """One-run scores of input-space audit canaries: the negative loss of each text under its label, higher "in".

    Raises:
        PrivauditError: a canary label the model does not have.
    """
    missing = sorted({c.label for c in canaries} - set(target.label2id))
    if missing:
        raise PrivauditError(f"{where}: canary label '{missing[0]}' is not a label of the model")
    logits = target.logits([c.text for c in canaries], batch_size=batch_size)
    return -losses(logits, np.array([target.label2id[c.label] for c in canaries]))


def load_target(
    request,
    attacks: list[ExtractionAttack],
    exposure_set: list[Canary],
    audit_set: list[Canary],
    *,
    compute=None,
):
    """The model directory, or the endpoint; an endpoint is refused ModIvA and checked against the query budget."""
    if request.endpoint is None:
        from privaudit.target import Target

        if request.model_dir is None:
            raise PrivauditError("give MODEL_DIR or --endpoint URL")
        return Target.load(request.model_dir, allow_pickle=request.allow_pickle, compute=compute)
    if request.model_dir is not None:
        raise PrivauditError("give MODEL_DIR or --endpoint URL, not both")
    white_box = [a.name for a in attacks if "inputs_embeds" in a.requires]
    if white_box:
        raise PrivauditError(
            f"extraction attack '{white_box[0]}' is white-box (it optimises the model's input embeddings), and an "
            "endpoint gives only outputs: pass --no-extract (or --attack exposure) to audit exposure (and --one-run) "
            "through --endpoint"
        )
    from privaudit.endpoint.remote import RemoteTarget

    target = RemoteTarget(request.endpoint, label_names=request.endpoint.label_names, cache_dir=request.endpoint_cache)
    # Every text the audit will ask for, checked against --max-queries before the first query.
    needed = [c.text for c in exposure_set] + ([c.text for c in audit_set] if request.one_run else [])
    if exposure_set and any(a.name == "exposure" for a in attacks):
        firsts = {(c.template, c.alphabets): c for c in exposure_set}.values()
        for c in firsts:
            space = int(np.prod([len(a) for a in c.alphabets], dtype=np.float64))
            if space <= MAX_ENUMERATE and request.sample is None:
                needed += candidates(c)[0]
    target.check_budget(needed)
    return target


def describe_target(target, request) -> dict:
    if request.endpoint is not None:
        return {"path": None, "fingerprint": None, **request.endpoint.describe()}
    return {"path": str(request.model_dir), "fingerprint": target.fingerprint()}
