"""Reference models under --group-by hold whole users in or out (privaudit/training/executor.py, reference.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from privaudit.target import Target
from privaudit.training import reference
from privaudit.training.executor import JobResult, subset

ROOT = Path(__file__).resolve().parents[2]
USERS = ROOT / "fixtures" / "data" / "users"
TINY = ROOT / "fixtures" / "models" / "intent-tiny"


def _read(name: str) -> list[dict]:
    return [json.loads(line) for line in (USERS / f"{name}.jsonl").open(encoding="utf-8")]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_subset_by_user_takes_whole_users_within_the_size(seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 60, 400)
    for index in range(5):
        chosen, _ = subset(seed, index, 400, 150, groups)
        taken = set(groups[chosen].tolist())
        assert np.isin(groups, list(taken)).sum() == chosen.size  # every record of a chosen user, none other
        assert chosen.size <= 150 or len(taken) == 1
        assert chosen.size > 150 - np.bincount(groups).max()  # it stops only when the next user would not fit...
    assert subset(seed, 0, 400, 150, groups)[0].tolist() == subset(seed, 0, 400, 150, groups)[0].tolist()
    # ...and without owners the draw is the record-level one it always was.
    assert subset(seed, 0, 400, 150)[0].size == 150


@pytest.mark.parametrize("online", [False, True])
def test_reference_models_never_train_on_part_of_a_user(online, monkeypatch, tmp_path):
    members, non_members, population = _read("members"), _read("non_members"), _read("population")
    audited = members + non_members
    target = Target.load(TINY)
    seen = []

    def fake_run(jobs, data, *, on_done, **_):  # what each job would train on, without training it
        for job in jobs:
            chosen, _ = subset(job.seed, job.index, len(data.pool_texts), job.size, data.pool_groups)
            seen.append(chosen)
            n = len(data.scored_texts)
            on_done(JobResult(index=job.index, status="cached", logits=np.zeros((n, target.n_labels))))

    monkeypatch.setattr(reference, "run_jobs", fake_run)
    label_ids = {name: i for i, name in target.id2label.items()}
    signals = reference.reference_signals(
        target,
        audited_texts=[r["text"] for r in audited],
        audited_labels=np.array([label_ids[r["label"]] for r in audited]),
        population_texts=[r["text"] for r in population],
        population_labels=np.array([label_ids[r["label"]] for r in population]),
        n_models=4,
        online=online,
        seed=0,
        cache_dir=tmp_path,
        audited_groups=[r["user_id"] for r in audited],
        population_groups=[r["user_id"] for r in population],
    )
    owners = np.array([r["user_id"] for r in population] + ([r["user_id"] for r in audited] if online else []))
    for j, chosen in enumerate(seen):
        inside = set(owners[chosen])
        assert np.isin(owners, list(inside)).sum() == chosen.size  # whole users only
        held_out = set(owners) - inside
        assert not held_out & set(owners[chosen])  # no record of a held-out user is trained on
        # The signals say the same, user by user: a user's records are all IN or all OUT of model j.
        pop_in = signals.population_is_in[j]
        for user in {r["user_id"] for r in population}:
            mine = [i for i, r in enumerate(population) if r["user_id"] == user]
            assert len(set(pop_in[mine].tolist())) == 1
        if online:
            audited_owner = np.array([r["user_id"] for r in audited])
            for user in set(audited_owner):
                assert len(set(signals.is_in[j][audited_owner == user].tolist())) == 1
        else:
            assert not signals.is_in[j].any() and chosen.max() < len(population)
    if online:
        assert signals.is_in.any() and not signals.is_in.all()
