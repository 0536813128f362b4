"""Against peers: IBM ART's membership-inference attacks on the same target outputs as privaudit's attacks.

Both tools read one scoring pass of ``intent-tiny`` over the fixture (1,000 members, 1,000 non-members), and both
tools' scores are measured by ``privaudit.stats.metrics.evaluate``, so the comparison is of the attacks alone. ART sees the
target as a :class:`art.estimators.classification.BlackBoxClassifier` whose inputs are row numbers and whose
``predict`` returns the stored softmax of privaudit's logits: ART's attacks query exactly the outputs privaudit
attacks, and nothing is scored twice.

ART's attacks, as its documentation runs them:

- ``MembershipInferenceBlackBoxRuleBased``: "member" when the prediction is right (a 0/1 score);
- ``MembershipInferenceBlackBox`` (nn, rf, gb attack models) trained on half the audited examples with their true
  membership, scoring the other half, and the other way round (two folds, so every audited example gets a score from
  a model that did not see it). It knows half the ground truth, which no privaudit attack is given;
- ``ShadowModels`` + ``MembershipInferenceBlackBox``: four shadow models trained by ART's own split of the population
  (1,000 of 1,999 examples each, the target's training-set size) with the target's recipe, then an attack model
  (rf) trained on the shadow models' outputs. ART cannot train a Hugging Face text model itself; its shadow
  template here trains through ``privaudit.training.train`` with the target's recipe and caches each model under
  ``.cache/bench/art-shadow`` by its training rows.

privaudit's side: ``loss`` (no reference model), ``lira-offline``, ``lira-online`` and ``rmia`` with K = 4 reference
models from the cache the power section fills.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.power import (
    CACHE,
    SEED,
    THREADS,
    Audit,
    attack,
    load_audit,
    measure,
    references,
    signals_with,
    summary,
    torch_threads,
)

K = 4
SHADOW_CACHE = CACHE / "art-shadow"
NOT_RUN = {
    "TensorFlow Privacy": (
        "`tensorflow-privacy` 0.9.0 (the newest on PyPI) requires `tensorflow~=2.4`, `tensorflow-probability~=0.22` "
        "and `numpy~=1.21`: installing it would pull TensorFlow and downgrade numpy below the 2.x this project uses. "
        "Its threshold attack on losses is the statistic privaudit's `loss` attack computes (Yeom et al. 2018), so "
        "its AUC on these outputs would equal the `loss` row by construction."
    ),
    "ML Privacy Meter": (
        "`privacy-meter` 1.0.1 (the newest on PyPI, July 2023) declares no dependencies but imports `tensorflow` "
        "(and `opacus.GradSampleModule`) when loaded (`privacy_meter/model.py`), and it predates RMIA: RMIA exists "
        "only in the GitHub repository's later code, which is not published on PyPI. Neither could be installed here "
        "without TensorFlow."
    ),
}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _rows(n: int) -> np.ndarray:
    """ART's inputs: row numbers as an ``(n, 1)`` float array, ART's layout for a one-feature record."""
    return np.arange(n, dtype=np.float32)[:, None]


def _lookup_classifier(probs: np.ndarray):
    """A black-box ART classifier over stored predictions: row ``i`` in, the target's softmax on text ``i`` out."""
    from art.estimators.classification import BlackBoxClassifier

    return BlackBoxClassifier(
        predict_fn=lambda x: probs[x[:, 0].astype(np.int64)],
        input_shape=(1,),
        nb_classes=probs.shape[1],
    )


class RecipeShadowModel:
    """ART shadow-model template: fits the target's training recipe on population rows (``x`` holds row numbers).

    ART's ``ShadowModels`` calls ``clone_for_refitting``, ``fit`` and ``predict``; this is the whole interface.
    """

    input_shape = (1,)

    def __init__(self, audit: Audit, cache_dir: Path = SHADOW_CACHE) -> None:
        self.audit = audit
        self.cache_dir = cache_dir
        self.seconds_ = 0.0
        self.cached_ = False

    def clone_for_refitting(self) -> RecipeShadowModel:
        return RecipeShadowModel(self.audit, self.cache_dir)

    def fit(self, x: np.ndarray, y: np.ndarray, **_kwargs) -> None:
        from privaudit.target import Target
        from privaudit.training.reference import train_config_from_recipe
        from privaudit.training.save import recipe_dict, save_model
        from privaudit.training.train import train_classifier

        target = self.audit.target
        rows = x[:, 0].astype(np.int64)
        config, dp, _ = train_config_from_recipe(target.recipe, str(target.path))
        key = hashlib.sha256(
            json.dumps([rows.tolist(), repr(config), repr(dp), target.fingerprint()]).encode()
        ).hexdigest()[:16]
        model_dir = self.cache_dir / key
        ledger = model_dir.with_suffix(".seconds")
        if (model_dir / "privaudit.json").is_file() and ledger.is_file():
            self.cached_, self.seconds_ = True, float(ledger.read_text())
        else:
            start = time.perf_counter()
            trained = train_classifier(
                texts=[self.audit.population_texts[i] for i in rows],
                labels=np.asarray(y).argmax(axis=1),
                label_names=[target.id2label[i] for i in range(target.n_labels)],
                config=replace(config, seed=int(key[:8], 16) % 2**31),
                dp=dp,
                tokenizer=target.tokenizer,
            )
            save_model(
                trained, model_dir, recipe_dict(trained, data={"n_examples": len(rows)}, canaries=None), overwrite=True
            )
            self.seconds_ = time.perf_counter() - start
            ledger.write_text(f"{self.seconds_}\n")
        self.model_ = Target.load(model_dir)

    def predict(self, x: np.ndarray, **_kwargs) -> np.ndarray:
        texts = [self.audit.population_texts[i] for i in x[:, 0].astype(np.int64)]
        return softmax(self.model_.logits(texts)).astype(np.float32)


def _seeded() -> None:
    # ART's attack models draw from numpy's and torch's global generators (scikit-learn's random_state=None)
    np.random.seed(SEED)
    torch.manual_seed(SEED)


def _folds(is_member: np.ndarray) -> list[np.ndarray]:
    """Two stratified halves of the audited examples, as boolean masks."""
    rng = np.random.default_rng(SEED)
    first = np.zeros(is_member.size, dtype=bool)
    for side in (is_member, ~is_member):
        index = np.flatnonzero(side)
        first[rng.permutation(index)[: index.size // 2]] = True
    return [first, ~first]


def art_black_box(audit: Audit, probs: np.ndarray, onehot: np.ndarray, model_type: str) -> np.ndarray:
    """ART's learned black-box attack, cross-fitted: each half scored by a model trained on the other half."""
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox

    x = _rows(len(audit.texts))
    scores = np.empty(len(audit.texts))
    for train in _folds(audit.is_member):
        _seeded()
        mia = MembershipInferenceBlackBox(_lookup_classifier(probs), attack_model_type=model_type)
        members, non_members = train & audit.is_member, train & ~audit.is_member
        mia.fit(x=x[members], y=onehot[members], test_x=x[non_members], test_y=onehot[non_members])
        scores[~train] = mia.infer(x[~train], onehot[~train], probabilities=True).ravel()
    return scores


def art_shadow(audit: Audit, probs: np.ndarray, onehot: np.ndarray, model_types: tuple[str, ...]) -> dict:
    """ART's ShadowModels (K shadow models on the population) feeding its black-box attack."""
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox, ShadowModels

    template = RecipeShadowModel(audit)
    shadow = ShadowModels(template, num_shadow_models=K, random_state=SEED)
    pop_onehot = np.eye(audit.target.n_labels, dtype=np.float32)[audit.population_labels]
    start = time.perf_counter()
    (mx, my, mp), (nx, ny, np_) = shadow.generate_shadow_dataset(_rows(len(audit.population_texts)), pop_onehot)
    dataset_seconds = time.perf_counter() - start
    models = shadow.get_shadow_models()
    trained_now = [m.seconds_ for m in models if not m.cached_]
    out = {
        "training_seconds": float(sum(m.seconds_ for m in models)),
        "trained_this_run": len(trained_now),
        # the shadow dataset's wall time less the training: loading and scoring the shadow models
        "scoring_seconds": dataset_seconds - float(sum(trained_now)),
        "attacks": {},
    }
    x = _rows(len(audit.texts))
    for model_type in model_types:
        _seeded()
        start = time.perf_counter()
        mia = MembershipInferenceBlackBox(_lookup_classifier(probs), attack_model_type=model_type)
        mia.fit(x=mx, y=my, test_x=nx, test_y=ny, pred=mp, test_pred=np_)
        scores = mia.infer(x, onehot, probabilities=True).ravel()
        out["attacks"][model_type] = (scores, time.perf_counter() - start)
    return out


def _row(tool: str, attack_name: str, models: str, metrics: dict, attack_s: float, train_s: float | None) -> dict:
    return {
        "tool": tool,
        "attack": attack_name,
        "models": models,
        **metrics,
        "attack_seconds": attack_s,
        "training_seconds": train_s,
    }


def run(repeats: int) -> dict:
    """The ``peers`` section: privaudit and ART on the same outputs, measured alike."""
    del repeats  # attack times here are milliseconds to seconds; training is measured once, when it happens
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBoxRuleBased

    with torch_threads(THREADS):
        audit = load_audit()
        refs = {online: references(audit, n_models=K, online=online) for online in (False, True)}
        rows = []
        for name, online in (("loss", None), ("lira-offline", False), ("lira-online", True), ("rmia", False)):
            ref = None if online is None else refs[online]
            _, metrics, seconds = attack(name, signals_with(audit, ref, 0 if ref is None else K), audit.is_member)
            train = None if ref is None else sum(ref.train_seconds) if len(ref.train_seconds) == K else None
            models = "none" if ref is None else f"{K} {'online' if online else 'offline'} reference"
            rows.append(_row("privaudit", name, models, metrics, seconds, train))

        probs = softmax(audit.logits).astype(np.float32)
        onehot = np.eye(audit.target.n_labels, dtype=np.float32)[audit.labels]
        start = time.perf_counter()
        rule = MembershipInferenceBlackBoxRuleBased(_lookup_classifier(probs))
        scores = rule.infer(_rows(len(audit.texts)), onehot, probabilities=True)[:, 1]
        seconds = time.perf_counter() - start
        rows.append(
            _row(
                "ART",
                "MembershipInferenceBlackBoxRuleBased",
                "none",
                summary(measure(scores, audit.is_member)),
                seconds,
                None,
            )
        )
        for model_type in ("nn", "rf", "gb"):
            start = time.perf_counter()
            scores = art_black_box(audit, probs, onehot, model_type)
            seconds = time.perf_counter() - start
            rows.append(
                _row(
                    "ART",
                    f"MembershipInferenceBlackBox ({model_type}), trained on half the true membership",
                    "none",
                    summary(measure(scores, audit.is_member)),
                    seconds,
                    None,
                )
            )
        # ART's documented shadow-model example uses rf; its nn attack model took two minutes here for no gain
        shadow = art_shadow(audit, probs, onehot, ("rf",))
        for model_type, (scores, seconds) in shadow["attacks"].items():
            rows.append(
                _row(
                    "ART",
                    f"ShadowModels + MembershipInferenceBlackBox ({model_type})",
                    f"{K} shadow",
                    summary(measure(scores, audit.is_member)),
                    seconds,
                    shadow["training_seconds"],
                )
            )
    seconds = {"target scoring pass (members, non-members, population)": audit.scoring_seconds}
    for row in rows:
        seconds[f"{row['tool']} {row['attack']} (attack only)"] = row["attack_seconds"]
    for online in (False, True):
        if len(refs[online].train_seconds) == K:
            seconds[f"privaudit: {K} {'online' if online else 'offline'} reference models, train + score"] = sum(
                refs[online].train_seconds
            )
    seconds[f"ART: {K} shadow models, train (recorded when trained)"] = shadow["training_seconds"]
    seconds[f"ART: {K} shadow models, load + score"] = shadow["scoring_seconds"]
    data = {
        "seconds": seconds,
        "rows": rows,
        "k": K,
        "n_members": int(audit.is_member.sum()),
        "n_non_members": int((~audit.is_member).sum()),
        "torch_threads": THREADS,
        "art_version": _version("adversarial-robustness-toolbox"),
        "not_run": NOT_RUN,
    }
    data["notes"] = _notes(data)
    return data


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _notes(data: dict) -> str:
    rows = data["rows"]
    ours = {r["attack"]: r for r in rows if r["tool"] == "privaudit"}
    art = [r for r in rows if r["tool"] == "ART"]
    best_art = max(art, key=lambda r: r["tpr_at_1%"] or 0)
    best_ours = max(ours.values(), key=lambda r: r["tpr_at_1%"] or 0)
    best_art_auc = max(art, key=lambda r: r["auc"])
    parts = [
        f"Best TPR at 1% FPR: privaudit `{best_ours['attack']}` {best_ours['tpr_at_1%']:.1%} "
        f"(AUC {best_ours['auc']:.3f}) against ART's {best_art['attack']} {best_art['tpr_at_1%']:.1%} "
        f"(AUC {best_art['auc']:.3f}). ART's best AUC is {best_art_auc['auc']:.3f} ({best_art_auc['attack']}). ",
    ]
    best_auc = max(rows, key=lambda r: r["auc"])
    parts.append(
        f"The highest AUC of all is {best_auc['tool']}'s `{best_auc['attack']}` ({best_auc['auc']:.3f}): the "
        "reference-model attacks trade average-case AUC for power at low FPR, which is what an audit's epsilon "
        "bound and TPR targets read. "
    )
    if ours["rmia"]["tpr_at_0.1%"] == 0:
        parts.append(
            "privaudit's RMIA finds no member at 0.1% FPR here: its top-ranked examples include non-members, and "
            "0.1% of 1,000 non-members allows one false positive. "
        )
    loss = ours["loss"]
    beaten = [r for r in art if r["tpr_at_1%"] is not None and r["tpr_at_1%"] > loss["tpr_at_1%"]]
    if beaten:
        parts.append(
            "Without reference models, privaudit's `loss` is beaten at 1% FPR by "
            + ", ".join(f"{r['attack']} ({r['tpr_at_1%']:.1%})" for r in beaten)
            + f" against {loss['tpr_at_1%']:.1%}. "
        )
    beats_ours = [r for r in art if (r["tpr_at_1%"] or 0) > (best_ours["tpr_at_1%"] or 0)]
    if beats_ours:
        parts.append("**ART beats every privaudit attack at 1% FPR here**; closing it needs a learned attack. ")
    parts.append(
        "ART's rule-based attack gives 0/1 scores, so it has one ROC point and no TPR at low FPR. ART's learned "
        "black-box attack is given half the true membership labels, more than any privaudit attack or a real "
        "attacker has, and its scores come from two attack models (one per fold). Its shadow-model attack trains "
        f"{data['k']} models as privaudit's offline attacks do, so the two sides cost about the same training; ART "
        "cannot train a text model itself, so its shadow models are trained by privaudit's trainer with the target's "
        "recipe. Its nn attack model on the shadow data was slower (two minutes) and weaker than rf in a trial run, so "
        "only rf is run. "
        "Not run: " + " ".join(f"{tool}: {why}" for tool, why in data["not_run"].items())
    )
    return "".join(parts)
