"""Reference (shadow) models: trained the target's way on data like the target's, to calibrate strong attacks.

Each reference model trains on as many examples as the target did, drawn at random from a pool: the population alone
(offline: every audited example is OUT of every reference model), or the population together with the audited examples
(online: each audited example is IN some models and OUT of the others, as LiRA needs; Carlini et al. 2022, sec. IV).
The models are cached on disk under a key of the recipe, the data and the seed, each written atomically, so an
interrupted run resumes with the models it already has.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from privaudit.data import fingerprint
from privaudit.errors import PrivauditError
from privaudit.target import Target
from privaudit.training.model import Architecture
from privaudit.training.train import DPConfig, TrainConfig, recipe_dict, save_model, train_classifier

DEFAULT_CACHE = Path(".cache") / "privaudit" / "reference"


@dataclass(frozen=True)
class ReferenceSignals:
    """Reference models' logits on the audited examples and on the population."""

    logits: np.ndarray  # (K, n, C)
    is_in: np.ndarray  # (K, n) bool
    population_logits: np.ndarray | None  # (K, m, C)
    population_is_in: np.ndarray | None = None  # (K, m) bool: the population examples each model trained on


def train_config_from_recipe(recipe: dict | None, source: str) -> tuple[TrainConfig, DPConfig | None, int]:
    """The target's training recipe, DP parameters and training-set size, from its ``privaudit.json``.

    Raises:
        PrivauditError: no recipe, or one without the fields needed to retrain.
    """
    if not recipe or "recipe" not in recipe:
        raise PrivauditError(
            f"{source}: no training recipe (privaudit.json) to train reference models from; "
            "pass --train-config FILE, or train the model with 'privaudit train'"
        )
    try:
        raw = dict(recipe["recipe"])
        arch = raw.pop("architecture", None)
        config = TrainConfig(**raw, architecture=Architecture(**arch) if arch else None)
        n_train = int(recipe["data"]["n_examples"])
    except (KeyError, TypeError) as err:
        raise PrivauditError(f"{source}: the training recipe lacks {err}; retrain with 'privaudit train'") from err
    dp = recipe.get("dp")
    dp_config = None
    if dp:
        dp_config = DPConfig(
            delta=float(dp["delta"]),
            max_grad_norm=float(dp["max_grad_norm"]),
            noise_multiplier=float(dp["noise_multiplier"]),
            accountant=dp.get("accountant", "rdp"),
            grad_sample_mode=dp.get("grad_sample_mode", "ghost"),
        )
    return config, dp_config, n_train


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def reference_signals(
    target: Target,
    *,
    audited_texts: Sequence[str],
    audited_labels: np.ndarray,
    population_texts: Sequence[str],
    population_labels: np.ndarray,
    n_models: int,
    online: bool,
    seed: int,
    recipe: dict | None = None,
    cache_dir: Path = DEFAULT_CACHE,
    score_population: bool = True,
    on_model: Callable[[int, int, str], None] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
) -> ReferenceSignals:
    """Train (or load from cache) ``n_models`` reference models and score the audited and population examples.

    Args:
        target: the audited model; its recipe and tokenizer are reused.
        audited_texts: members and non-members, in audit order.
        audited_labels: their label ids.
        population_texts: examples from the training distribution, not in the target's training set.
        population_labels: their label ids.
        n_models: how many reference models.
        online: include audited examples in the pool, so each is IN some models.
        seed: the run's seed; model ``i`` is drawn and trained from it.
        recipe: a training recipe overriding the target's (``--train-config``).
        cache_dir: where trained models are kept between runs.
        score_population: also score the population with each model (RMIA's z-samples need it; LiRA does not).
        on_model: called with (model index, total, "trained" | "cached") as each model becomes available.
        on_step: training progress, (model index, steps done, total steps).
    """
    if n_models < 1:
        raise PrivauditError("--reference-models must be at least 1")
    config, dp, n_train = train_config_from_recipe(recipe or target.recipe, str(target.path / "privaudit.json"))
    n_audited, n_pop = len(audited_texts), len(population_texts)
    pool_texts = list(population_texts) + (list(audited_texts) if online else [])
    pool_labels = np.concatenate([population_labels, audited_labels]) if online else np.asarray(population_labels)
    if len(pool_texts) < 2:
        raise PrivauditError("reference models need a --population file with examples from the training distribution")
    size = min(n_train, len(pool_texts) // 2 if not online else len(pool_texts))
    label_names = [target.id2label[i] for i in range(target.n_labels)]
    data_key = _key(
        fingerprint(pool_texts, pool_labels.tolist()), len(population_texts), online, seed, size, target.fingerprint()
    )
    recipe_key = _key(config, dp)
    logits = np.empty((n_models, n_audited, target.n_labels))
    is_in = np.zeros((n_models, n_audited), dtype=bool)
    pop_logits = np.empty((n_models, n_pop, target.n_labels)) if score_population else None
    pop_in = np.zeros((n_models, n_pop), dtype=bool)
    for i in range(n_models):
        rng = np.random.default_rng([seed, i, 7])
        chosen = np.sort(rng.choice(len(pool_texts), size=size, replace=False))
        in_pool = np.zeros(len(pool_texts), dtype=bool)
        in_pool[chosen] = True
        pop_in[i] = in_pool[:n_pop]
        if online:
            is_in[i] = in_pool[n_pop:]
        model_dir = Path(cache_dir) / recipe_key / data_key / f"model-{i}"
        if (model_dir / "privaudit.json").is_file():
            status = "cached"
        else:
            trained = train_classifier(
                texts=[pool_texts[j] for j in chosen],
                labels=pool_labels[chosen],
                label_names=label_names,
                config=replace(config, seed=int(rng.integers(2**31))),
                dp=dp,
                tokenizer=target.tokenizer,
                on_step=None if on_step is None else (lambda done, total, i=i: on_step(i, done, total)),
            )
            save_model(
                trained,
                model_dir,
                recipe_dict(trained, data={"n_examples": size, "reference_index": i}, canaries=None),
                overwrite=True,
            )
            status = "trained"
        reference = Target.load(model_dir)
        scored = reference.logits(list(audited_texts) + (list(population_texts) if score_population else []))
        logits[i] = scored[:n_audited]
        if pop_logits is not None:
            pop_logits[i] = scored[n_audited:]
        if on_model is not None:
            on_model(i + 1, n_models, status)
    return ReferenceSignals(
        logits=logits,
        is_in=is_in,
        population_logits=pop_logits,
        population_is_in=pop_in if score_population else None,
    )


def load_reference_dirs(
    target: Target, directories: Sequence[Path], *, texts: Sequence[str], allow_pickle: bool = False
) -> np.ndarray:
    """Logits of user-supplied reference models (``--reference-dir``) on ``texts``, shape ``(K, len(texts), C)``.

    Such models are taken as trained without the audited examples (offline reference models).

    Raises:
        PrivauditError: a directory that does not load, or whose labels differ from the target's.
    """
    logits = []
    for directory in directories:
        reference = Target.load(directory, allow_pickle=allow_pickle)
        if reference.label2id != target.label2id:
            raise PrivauditError(
                f"{directory}: its labels differ from the audited model's; reference models must share the label set"
            )
        logits.append(reference.logits(list(texts)))
    return np.stack(logits)
