"""Per-example results: which audited records leak, from the scores of the single scoring pass.

Every attack's score of every audited example is already on :class:`~privaudit.mia.run.AttackResult`; this module
turns them, with what is known of each example (:class:`Examples`), into:

- the rows of ``--per-example FILE`` (one JSON object per example; ``docs/schema-per-example.json``);
- the ``--top N`` most exposed members of the JSON and HTML reports.

Two definitions are shared by both:

- **flag FPR** of an example under an attack (:func:`flag_fpr`): the fraction of non-members whose score is at or
  above the example's score. It is the false-positive rate of the threshold placed at that score, i.e. the FPR at
  which the attack would flag this example as a member; a small flag FPR means the example stands out. It is the
  example's upper-tail percentile among the non-members (0 = above every non-member, 1 = at or below the lowest).
- **strongest attack** (:func:`strongest_attack`): the attack with the highest TPR at 1% FPR, ties broken by AUC;
  when TPR at 1% FPR is unsupported (fewer than 100 non-members), the attack with the highest AUC. Ties past that
  keep the order of ``--attack``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from privaudit.mia.types import Examples, ExposedMember, MostExposed  # noqa: F401 (re-exported: the names' old home)

if TYPE_CHECKING:
    from privaudit.mia.signals import Signals
    from privaudit.mia.types import AttackResult, MiaResult

EXAMPLE_SCHEMA = "privaudit.mia.example/1"
STRONGEST_FPR = 0.01
STRONGEST_RULE = (
    "highest TPR at 1% FPR (ties: highest AUC); highest AUC when TPR at 1% FPR is unsupported (< 100 non-members)"
)
MEMBERS, NON_MEMBERS = "members", "non_members"


def text_sha256(text: str) -> str:
    """The SHA-256 of a text's UTF-8 bytes, as lower-case hex: the ``sha256`` of every row and top-N entry."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def examples_from_files(
    *,
    member_file: str,
    non_member_file: str,
    texts: Sequence[str],
    n_members: int,
    signals: Signals,
    id2label: dict[int, str],
    redact_texts: bool,
) -> Examples:
    """The examples of an audit of a model on two data files, hashed before any text is dropped.

    Args:
        member_file: the ``--members`` file; its examples are the first ``n_members``.
        non_member_file: the ``--non-members`` file.
        texts: every audited text, members first.
        n_members: how many of them are members.
        signals: the scoring pass's signals (labels and logits of the same examples).
        id2label: the model's label names.
        redact_texts: keep no text, only its hash.
    """
    n = len(texts)
    return Examples(
        sets=(MEMBERS,) * n_members + (NON_MEMBERS,) * (n - n_members),
        files=(member_file,) * n_members + (non_member_file,) * (n - n_members),
        index=np.r_[np.arange(n_members), np.arange(n - n_members)],
        sha256=tuple(text_sha256(t) for t in texts),
        texts=None if redact_texts else tuple(texts),
        labels=tuple(id2label[int(i)] for i in signals.labels),
        correct=signals.predicted_labels() == signals.labels,
    )


def examples_from_scores(path: str, is_member: np.ndarray, signals: Signals | None) -> Examples:
    """The examples of a ``--scores`` audit: no texts; labels (ids) and correctness when the file has logits."""
    n = int(is_member.size)
    return Examples(
        sets=tuple(MEMBERS if m else NON_MEMBERS for m in is_member),
        files=(path,) * n,
        index=np.arange(n),
        labels=None if signals is None else tuple(str(int(i)) for i in signals.labels),
        correct=None if signals is None else signals.predicted_labels() == signals.labels,
    )


def flag_fpr(scores: np.ndarray, is_member: np.ndarray) -> np.ndarray:
    """For each example, the fraction of non-members whose score is ``>=`` its score (see the module docstring).

    Args:
        scores: membership scores, shape ``(n,)``; higher means more likely a member.
        is_member: ground truth, shape ``(n,)``.

    Returns:
        Shape ``(n,)``, in ``[0, 1]``: the FPR at which each example would be flagged as a member.
    """
    scores = np.asarray(scores, dtype=np.float64)
    out = np.sort(scores[~np.asarray(is_member, dtype=bool)])
    # side="left": non-members tied with the example count as flagged with it (a threshold at its score).
    return (out.size - np.searchsorted(out, scores, side="left")) / out.size


def strongest_attack(attacks: Sequence[AttackResult]) -> AttackResult | None:
    """The attack that ranks records, by :data:`STRONGEST_RULE`; ``None`` when no attack ran."""

    def key(i_attack: tuple[int, AttackResult]) -> tuple:
        i, attack = i_attack
        tpr = next((t for t in attack.metrics.tpr_at_fpr if abs(t.fpr - STRONGEST_FPR) < 1e-12), None)
        at_1pct = tpr.tpr if tpr is not None and tpr.supported else -1.0
        return (at_1pct, attack.metrics.auc.value, -i)

    if not attacks:
        return None
    return max(enumerate(attacks), key=key)[1]


def largest_epsilon_bound(attacks: Sequence[AttackResult]) -> AttackResult | None:
    """The attack with the largest empirical epsilon lower bound (ties keep the order of ``--attack``); ``None``
    when no attack ran."""
    if not attacks:
        return None
    return max(enumerate(attacks), key=lambda ia: (ia[1].metrics.epsilon_lower_bound, -ia[0]))[1]


def most_exposed(
    attacks: Sequence[AttackResult], is_member: np.ndarray, examples: Examples, n: int
) -> MostExposed | None:
    """The ``n`` members the strongest attack scores highest; ``None`` when ``n`` is 0 or no attack ran."""
    attack = strongest_attack(attacks)
    if attack is None or n <= 0:
        return None
    fpr = flag_fpr(attack.scores, is_member)
    members = np.flatnonzero(is_member)
    order = members[np.argsort(-attack.scores[members], kind="stable")][:n]
    rows = tuple(
        ExposedMember(
            rank=rank,
            set=examples.sets[i],
            file=examples.files[i],
            index=int(examples.index[i]),
            sha256=None if examples.sha256 is None else examples.sha256[i],
            text=None if examples.texts is None else examples.texts[i],
            label=None if examples.labels is None else examples.labels[i],
            score=float(attack.scores[i]),
            flag_fpr=float(fpr[i]),
            user=None if examples.users is None else examples.users[i],
            records=None if examples.records is None else int(examples.records[i]),
        )
        for rank, i in enumerate(order, start=1)
    )
    return MostExposed(attack=attack.name, rule=STRONGEST_RULE, n=n, members=rows)


def example_rows(result: MiaResult) -> Iterator[dict]:
    """The rows of ``--per-example FILE``, in audit order; each matches ``docs/schema-per-example.json``.

    Raises:
        ValueError: when the result holds no per-example data (built by hand, without ``examples``).
    """
    examples = result.examples
    if examples is None:
        raise ValueError("the result holds no per-example data")
    fprs = {a.name: flag_fpr(a.scores, result.is_member) for a in result.attacks}
    for i in range(len(examples)):
        row: dict = {
            "schema": EXAMPLE_SCHEMA,
            "set": examples.sets[i],
            "file": examples.files[i],
            "index": int(examples.index[i]),
            "sha256": None if examples.sha256 is None else examples.sha256[i],
        }
        if examples.users is not None:
            row["user"] = examples.users[i]
            row["records"] = int(examples.records[i])
        if examples.texts is not None:
            row["text"] = examples.texts[i]
        row["label"] = None if examples.labels is None else examples.labels[i]
        row["member"] = bool(result.is_member[i])
        row["correct"] = None if examples.correct is None else bool(examples.correct[i])
        row["scores"] = {a.name: float(a.scores[i]) for a in result.attacks}
        row["flag_fpr"] = {name: float(f[i]) for name, f in fprs.items()}
        yield row
