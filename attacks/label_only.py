"""Label-only augmentation attack (Choquette-Choo et al. 2021), with text perturbations.

Choquette-Choo, Tramer, Carlini, Papernot, "Label-Only Membership Inference Attacks", ICML 2021, sec. 4 (data
augmentation attack): a model's prediction on a training example is more robust to small perturbations of it than on
an unseen one, so the fraction of perturbed copies still given the true label separates members from non-members
using labels alone. Their image augmentations (flips, shifts) become text ones here: word dropout, swaps of adjacent
words, and replacement of words by words drawn from the audited data's vocabulary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from privaudit.errors import PrivauditError
from privaudit.mia.attack import Attack
from privaudit.mia.signals import Signals

KINDS = ("dropout", "swap", "replace")


def perturb(words: list[str], *, kind: str, rate: float, vocabulary: Sequence[str], rng: np.random.Generator) -> str:
    """One perturbed copy of a tokenized text; each word is touched with probability ``rate`` (at least one is)."""
    n = len(words)
    hit = rng.random(n) < rate
    if not hit.any():
        hit[rng.integers(n)] = True
    out = list(words)
    if kind == "dropout" and n > 1:
        keep = ~hit
        if not keep.any():
            keep[rng.integers(n)] = True
        out = [w for w, k in zip(words, keep) if k]
    elif kind == "swap" and n > 1:
        for i in np.flatnonzero(hit):
            j = i + 1 if i + 1 < n else i - 1
            out[i], out[j] = out[j], out[i]
    else:  # replace (also a one-word text's dropout and swap, which would leave nothing or nothing changed)
        for i in np.flatnonzero(hit):
            out[i] = vocabulary[rng.integers(len(vocabulary))]
    return " ".join(out)


def augmentations(texts: Sequence[str], *, k: int, rate: float, seed: int) -> list[str]:
    """``k`` perturbed copies of each text, text by text (``k`` consecutive entries per text).

    Copy ``j`` uses ``KINDS[j % 3]``; replacements are drawn from the words of all ``texts``. Each text's copies come
    from a generator seeded by the seed and the text's hash, so the same audit asks for the same copies whatever the
    order of its texts, and a rerun is answered by an endpoint's cache.
    """
    vocabulary = sorted({w for text in texts for w in text.split()})
    if not vocabulary:
        raise PrivauditError("label-only-augment: the audited texts have no words to perturb")
    out = []
    for text in texts:
        words = text.split() or [vocabulary[0]]
        digest = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
        rng = np.random.default_rng([seed, digest])
        out.extend(
            perturb(words, kind=KINDS[j % len(KINDS)], rate=rate, vocabulary=vocabulary, rng=rng) for j in range(k)
        )
    return out


class LabelOnlyAugment(Attack):
    """Score each example by how often the target keeps its true label under ``k`` random text perturbations.

    The score is the fraction of the ``k + 1`` texts (the example and its copies) predicted as the true label
    (Choquette-Choo et al. 2021, sec. 4); the example itself counts, so this refines the gap attack's score.

    Args:
        k: perturbed copies per example (each costs one query to an endpoint).
        rate: probability that a perturbation touches each word.
    """

    name = "label-only-augment"
    description = "Share of k perturbed copies kept at the true label (Choquette-Choo et al. 2021); label-only"
    requires = frozenset({"labels"})

    def __init__(self, *, k: int = 12, rate: float = 0.35) -> None:
        super().__init__(k=k, rate=rate)

    def _checked(self) -> tuple[int, float]:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise PrivauditError(f"label-only-augment: k must be an integer >= 1, got {self.k!r}")
        if not isinstance(self.rate, int | float) or not 0 < self.rate <= 1:
            raise PrivauditError(f"label-only-augment: rate must be in (0, 1], got {self.rate!r}")
        return self.k, float(self.rate)

    def queries(self, texts: Sequence[str], *, seed: int) -> list[str]:
        """``k`` perturbed copies of every audited text, ``k`` consecutive entries per text."""
        k, rate = self._checked()
        return augmentations(texts, k=k, rate=rate, seed=seed)

    def score(self, signals: Signals) -> np.ndarray:
        """Return the share of the example and its copies predicted as the true label."""
        self.check(signals)
        k, _ = self._checked()
        labels = np.asarray(signals.labels)
        copies = np.asarray(signals.extra_predicted[self.name]).reshape(len(labels), k)
        kept = (copies == labels[:, None]).sum(axis=1) + (signals.predicted_labels() == labels)
        return kept / (k + 1)
