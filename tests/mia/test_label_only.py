"""Label-only attacks (gap, label-only-augment), the outputs vocabulary (logits, top_k, labels), confidence on top-k."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FIXTURE_DATA, FIXTURE_MODEL
from sklearn.metrics import roc_auc_score as roc_auc

from privaudit.attacks.confidence import ConfidenceAttack
from privaudit.attacks.gap import GapAttack
from privaudit.attacks.label_only import LabelOnlyAugment, augmentations
from privaudit.attacks.loss import LossAttack
from privaudit.errors import PrivauditError
from privaudit.mia.run import MiaRequest, run_mia
from privaudit.mia.signals import Signals


def label_only(predicted, labels, **extra) -> Signals:
    """Signals as a label-only endpoint gives them: predicted labels, no scores."""
    return Signals(
        logits=None,
        labels=np.asarray(labels),
        predicted=np.asarray(predicted),
        source="the endpoint returns labels only",
        **extra,
    )


def test_gap_is_correctness_and_runs_on_labels_alone():
    signals = label_only([0, 1, 2, 2], [0, 1, 1, 2])
    assert signals.available() == {"labels"}
    assert GapAttack().score(signals).tolist() == [1.0, 1.0, 0.0, 1.0]


def test_an_attack_needing_more_than_labels_is_refused_naming_it_and_the_endpoint():
    with pytest.raises(PrivauditError, match="attack 'loss' needs full probabilities.*returns labels only"):
        LossAttack().score(label_only([0, 1], [0, 1]))


def test_confidence_on_top_k_reads_the_true_label_where_present_and_its_bound_elsewhere():
    nan = np.nan
    top2 = np.log(np.array([[0.6, 0.3, nan], [nan, 0.5, 0.45], [0.9, 0.05, 0.05]]))
    signals = Signals(logits=None, labels=np.array([1, 0, 0]), top_k_log_probs=top2, predicted=np.array([0, 1, 0]))
    assert signals.available() == {"top_k", "labels"}
    # Example 1's label is absent: p_y <= min(0.45, 1 - 0.95) = 0.05.
    assert ConfidenceAttack().score(signals) == pytest.approx([0.3, 0.05, 0.9])
    with pytest.raises(PrivauditError, match="attack 'entropy' needs full probabilities"):
        from privaudit.attacks.entropy import EntropyAttack

        EntropyAttack().score(signals)


def test_confidence_on_full_logits_is_exp_minus_loss():
    logits = np.random.default_rng(0).normal(size=(50, 4))
    labels = np.random.default_rng(1).integers(0, 4, 50)
    signals = Signals(logits=logits, labels=labels)
    assert ConfidenceAttack().score(signals) == pytest.approx(np.exp(LossAttack().score(signals)), rel=1e-12)


def test_augmentations_are_seeded_per_text_and_touch_every_copy():
    texts = ["play some jazz music now", "what is the weather in paris on monday"]
    first = augmentations(texts, k=6, rate=0.35, seed=0)
    assert len(first) == 12 and first == augmentations(texts, k=6, rate=0.35, seed=0)
    assert first != augmentations(texts, k=6, rate=0.35, seed=1)
    # A text's copies do not depend on the order of the audited texts (the vocabulary is the same set of words).
    assert augmentations(texts[::-1], k=6, rate=0.35, seed=0) == first[6:] + first[:6]
    assert all(copy != texts[i // 6] for i, copy in enumerate(first))
    dropped, swapped = first[0], first[1]
    assert len(dropped.split()) < 5 and sorted(swapped.split()) == sorted(texts[0].split())


def test_label_only_augment_scores_the_share_kept():
    attack = LabelOnlyAugment(k=2)
    signals = label_only([0, 1], [0, 0], extra_predicted={"label-only-augment": np.array([0, 1, 0, 0])})
    assert attack.score(signals) == pytest.approx([2 / 3, 2 / 3])
    with pytest.raises(PrivauditError, match="k must be an integer"):
        LabelOnlyAugment(k=0).queries(["a b"], seed=0)


def test_label_only_augment_beats_gap_on_the_fixture(tmp_path):
    """Choquette-Choo et al.'s claim on intent-tiny: the perturbed copies separate what the gap attack cannot.

    A subset keeps it fast (400 members, 400 non-members, k=8 copies each: 7,200 texts); the full fixture with the
    default k=12 is in the report. The AUC difference is checked with a paired bootstrap over the same resamples.
    """
    n = 400
    sides = []
    for name in ("members", "non_members"):
        lines = (FIXTURE_DATA / f"{name}.jsonl").read_text().splitlines()[:n]
        sides.append(tmp_path / f"{name}.jsonl")
        sides[-1].write_text("\n".join(lines) + "\n")
    request = MiaRequest(
        model_dir=FIXTURE_MODEL,
        members=sides[0],
        non_members=sides[1],
        attacks="gap,label-only-augment",
        attack_options=("label-only-augment:k=8",),
    )
    result = run_mia(request)
    gap, augment = (a for a in result.attacks)
    assert augment.metrics.auc.value > gap.metrics.auc.value
    assert augment.metrics.auc.low > 0.5 and gap.metrics.auc.low > 0.5
    rng = np.random.default_rng(0)
    is_member = result.is_member
    members, others = np.flatnonzero(is_member), np.flatnonzero(~is_member)
    gains = []
    for _ in range(300):
        idx = np.r_[rng.choice(members, members.size), rng.choice(others, others.size)]
        gains.append(roc_auc(is_member[idx], augment.scores[idx]) - roc_auc(is_member[idx], gap.scores[idx]))
    assert np.quantile(gains, 0.025) > 0, f"AUC gain 95% interval {np.quantile(gains, [0.025, 0.975])}"
