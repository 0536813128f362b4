"""Scores of data canaries (``privaudit plant``) from the final model, for ``privaudit dp-audit``.

Two scores, higher meaning "more likely inserted":

- ``embedding-movement`` (white-box, needs the base the model was fine-tuned from): how far each canary's own
  input-embedding rows moved from the base, along the direction that training on the canary would move them. The
  direction is the negative gradient of the canary's loss with respect to its rows, taken at the final model with the
  canary rows put back to their base values (the base itself has no classification head of the user's labels, so the
  final model's head and encoder stand in for it). The score is the size of the movement's projection on that unit
  direction (its absolute value: see :func:`embedding_movement_scores`). Only
  an inserted canary's own gradient reaches its rows (its tokens occur nowhere else), so for a left-out canary the
  rows hold only the base, DP noise and weight decay, all blind to the direction.
- ``loss`` (black-box fallback): the negative cross-entropy of the canary text under its label.

Any function of the final model and of the secret file (drawn before the coins) keeps the one-run analysis valid, so
the choice of score only changes how tight the bound is, never whether it holds (Steinke et al. 2023, Section 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from privaudit.canary.plant import KIND, DataCanary
from privaudit.errors import PrivauditError
from privaudit.textfile import json_lines

WHITE_BOX = "embedding-movement"
BLACK_BOX = "loss"
SCORES = (WHITE_BOX, BLACK_BOX)
# How many standard errors above 0 the correlation between the final and the base embedding matrices (rows no canary
# owns) must be. Weights unrelated to the base correlate as N(0, 1/n) over n coordinates; Adam with DP noise moves every
# row by about the learning rate each step, which brought the correlation down to 0.22 after 60 steps at 1e-2 (0.84 on
# the fixture recipe at 1e-3), far less than a fixed level would allow for long runs, but still hundreds of standard
# errors above 0.
MIN_BASE_Z = 5.0


def read_data_canaries(path: Path) -> list[DataCanary]:
    """Read the secret file of ``privaudit plant``.

    Raises:
        PrivauditError: a missing file, a line that is not a data canary, no canary, or no inserted or left-out one.
    """
    path = Path(path)
    if not path.is_file():
        raise PrivauditError(f"{path}: no such canary file; 'privaudit plant' writes one in OUT/secret/")
    canaries = []
    for where, obj in json_lines(path, what="secret canary file"):
        try:
            if not isinstance(obj, dict) or obj.get("kind") != KIND:
                raise PrivauditError(f"{where}: not a data canary (kind '{KIND}'); give the secret file of plant")
            ids = tuple(int(i) for i in obj["token_ids"])
            tokens = tuple(str(t) for t in obj["tokens"])
            label = obj["label"]
            canary = DataCanary(
                index=int(obj["index"]),
                inserted=bool(obj["inserted"]),
                text=str(obj["text"]),
                label=label if isinstance(label, int) and not isinstance(label, bool) else str(label),
                token_ids=ids,
                tokens=tokens,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise PrivauditError(
                f"{where}: each line needs 'text', 'label', 'inserted', 'token_ids' and 'tokens' ({err})"
            ) from None
        if not ids or len(ids) != len(tokens):
            raise PrivauditError(f"{where}: 'token_ids' and 'tokens' must be non-empty and of one length")
        canaries.append(canary)
    if not canaries:
        raise PrivauditError(f"{path}: the canary file is empty")
    coins = {c.inserted for c in canaries}
    if len(coins) == 1:
        which = "left-out" if True in coins else "inserted"
        raise PrivauditError(f"{path}: no {which} canary; a one-run audit needs both")
    return canaries


def check_matches(canaries: list[DataCanary], tokenizer, vocab_size: int, *, where: Path, model: Path) -> None:
    """The secret file belongs to this model's vocabulary: every id in range, spelled the same, and the canary text
    tokenizes to exactly its own ids.

    Raises:
        PrivauditError: the first canary that does not match, naming the file and the model.
    """
    fix = "give the secret file that 'privaudit plant --base' wrote for this model's base"
    for c in canaries:
        if any(not 0 <= i < vocab_size for i in c.token_ids):
            raise PrivauditError(
                f"{where}: canary {c.index} owns token ids outside the vocabulary of {model} ({vocab_size}); {fix}"
            )
        if tuple(tokenizer.convert_ids_to_tokens(list(c.token_ids))) != c.tokens:
            raise PrivauditError(f"{where}: canary {c.index}'s tokens are spelled differently in {model}; {fix}")
    texts = [c.text for c in canaries]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for c, ids in zip(canaries, encoded):
        if tuple(ids) != c.token_ids:
            raise PrivauditError(
                f"{where}: canary {c.index}'s text does not tokenize to its own tokens in {model}; {fix}"
            )


def label_ids(canaries: list[DataCanary], label2id: dict[str, int], *, where: Path) -> np.ndarray:
    """Each canary's label as the model's id: by name, else an integer id in range.

    Raises:
        PrivauditError: a label the model does not have.
    """
    ids = []
    for c in canaries:
        if str(c.label) in label2id:
            ids.append(label2id[str(c.label)])
        elif isinstance(c.label, int) and 0 <= c.label < len(label2id):
            ids.append(c.label)
        else:
            raise PrivauditError(f"{where}: canary label '{c.label}' is not a label of the model")
    return np.array(ids, dtype=np.int64)


def loss_scores(target, canaries: list[DataCanary], *, batch_size: int, where: Path) -> np.ndarray:
    """Black-box scores: the negative loss of each canary text under its label."""
    from privaudit.stats.logits import losses

    labels = label_ids(canaries, target.label2id, where=where)
    logits = target.logits([c.text for c in canaries], batch_size=batch_size)
    return -losses(logits, labels)


def load_base_embeddings(base: Path, model: torch.nn.Module, *, model_dir: Path) -> torch.Tensor:
    """The base's input-embedding matrix, after checking that the base is of the audited model's architecture.

    Raises:
        PrivauditError: not a model directory, no safetensors weights, another architecture or vocabulary.
    """
    from transformers import AutoConfig, AutoModel

    base = Path(base)
    if not (base / "config.json").is_file():
        raise PrivauditError(f"{base}: --base must be a local model directory with config.json")
    if not any((base / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        raise PrivauditError(f"{base}: no model.safetensors in --base; privaudit loads safetensors weights only")
    try:
        config = AutoConfig.from_pretrained(base, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as err:
        raise PrivauditError(f"{base}: unreadable base config ({str(err).splitlines()[0]})") from None
    ours = model.config
    if config.model_type != ours.model_type:
        raise PrivauditError(
            f"{base}: --base is a '{config.model_type}' model and {model_dir} a '{ours.model_type}' one; "
            "give the base the model was fine-tuned from"
        )
    for key in ("vocab_size", "hidden_size"):
        if getattr(config, key, None) != getattr(ours, key, None):
            raise PrivauditError(
                f"{base}: --base has {key} {getattr(config, key, None)} and {model_dir} "
                f"{getattr(ours, key, None)}; give the base the model was fine-tuned from"
            )
    try:
        encoder = AutoModel.from_pretrained(base, local_files_only=True, trust_remote_code=False, use_safetensors=True)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise PrivauditError(f"{base}: cannot load the base model ({str(err).splitlines()[0]})") from None
    weight = encoder.get_input_embeddings().weight.detach().float()
    if weight.shape != model.get_input_embeddings().weight.shape:
        raise PrivauditError(
            f"{base}: the base's input embedding is {tuple(weight.shape)} and {model_dir}'s "
            f"{tuple(model.get_input_embeddings().weight.shape)}; give the base the model was fine-tuned from"
        )
    return weight


def check_trained_from(final: torch.Tensor, base: torch.Tensor, owned: np.ndarray, *, base_dir: Path) -> float:
    """Check that the embeddings trained and started from the base; returns the base correlation.

    Raises:
        PrivauditError: the embeddings are the base's bit for bit (frozen), or unrelated to the base's.
    """
    if torch.equal(final, base):
        raise PrivauditError(
            f"{base_dir}: the model's input embeddings equal the base's: they were frozen in training, so the "
            "white-box score is impossible; drop --base to audit with the black-box loss score"
        )
    others = torch.ones(final.shape[0], dtype=torch.bool)
    others[torch.as_tensor(owned, dtype=torch.long)] = False
    a, b = final[others].flatten().double(), base[others].flatten().double()
    r = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    if not r * math.sqrt(a.numel()) >= MIN_BASE_Z:
        raise PrivauditError(
            f"{base_dir}: the model's input embeddings are unrelated to the base's (correlation {r:.3f}, not "
            f"{MIN_BASE_Z:g} standard errors above 0); give the --base the model was fine-tuned from"
        )
    return r


def embedding_movement_scores(
    target,
    base: Path,
    canaries: list[DataCanary],
    *,
    batch_size: int,
    where: Path,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> np.ndarray:
    """White-box scores: each canary's embedding movement from the base along its loss gradient, in absolute value.

    Raises:
        PrivauditError: a base of another architecture, frozen embeddings, an unrelated base, a bad label.
    """
    model = target.model
    embedding = model.get_input_embeddings()
    final = embedding.weight.detach().float().cpu().clone()
    base_weight = load_base_embeddings(base, model, model_dir=target.path)
    owned = np.concatenate([np.array(c.token_ids) for c in canaries])
    check_trained_from(final, base_weight, owned, base_dir=Path(base))
    labels = torch.as_tensor(label_ids(canaries, target.label2id, where=where))
    reset = final.clone()
    reset[owned] = base_weight[owned]
    grad = torch.zeros_like(reset)
    original = embedding.weight
    device = original.device
    try:
        embedding.weight = torch.nn.Parameter(reset.to(device=device, dtype=original.dtype))
        model.eval()
        for start in range(0, len(canaries), batch_size):
            chunk = canaries[start : start + batch_size]
            enc = target.tokenizer([c.text for c in chunk], padding=True, return_tensors="pt").to(device)
            logits = model(**enc).logits.float()
            # Sum, not mean: each canary's gradient lands in its own rows only, at its own scale.
            loss = torch.nn.functional.cross_entropy(
                logits, labels[start : start + batch_size].to(device), reduction="sum"
            )
            loss.backward()
            if progress is not None:
                progress("scoring data canaries", min(start + batch_size, len(canaries)), len(canaries))
        grad = embedding.weight.grad.detach().float().cpu()
    finally:
        embedding.weight = original
    scores = np.empty(len(canaries))
    for n, c in enumerate(canaries):
        rows = list(c.token_ids)
        moved = (final[rows] - base_weight[rows]).flatten().double()
        direction = -grad[rows].flatten().double()
        norm = float(direction.norm())
        # The magnitude, not the signed projection: with Adam (and DP noise) a canary's rows move far from the base,
        # and the gradient at the end points along or against the early movement, so half the inserted canaries came
        # out negative; left-out rows move in directions blind to it either way (docs/dp-audit.md, "Scores").
        scores[n] = abs(float(moved @ direction)) / norm if norm > 0 else 0.0
    return scores
