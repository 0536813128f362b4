"""benchmarks/modiva_paper.py's pure parts: the design's grid, the training options of each row (and the rows this
checkout must skip), the rates with their Clopper-Pearson intervals, and the verdicts read from the rows.

Training a model per row takes a minute on this CPU, so the study itself is not run here; its plumbing was run on
the tiny BERT rows (see the module and BENCHMARKS.md). Interval values are the exact binomial (Clopper-Pearson)
intervals of the statistical tables (e.g. 5 of 10: [0.1871, 0.8129]; 0 of 10: upper 1 - 0.025^(1/10) = 0.3085).
"""

from __future__ import annotations

import dataclasses
import importlib

import pytest
from conftest import ROOT

from privaudit.training.job import TrainJob
from privaudit.training.model import Architecture

# TrainJob's fields before issue 19's classifiers: fixed here, so that the skip tests keep testing the skip once the
# checkout has the flags (the study itself reads the checkout's own fields).
MAIN_FIELDS = frozenset(
    "accountant architecture audit_canaries audit_template base batch_size canaries_out canary canary_controls "
    "canary_count canary_label canary_repeats data delta device dp epochs from_scratch gradient_canaries lora_alpha "
    "lora_rank lora_targets lr max_grad_norm max_length noise_multiplier out overwrite precision seed target_epsilon "
    "train_layers".split()
)
# The flags issue 19's recurrent and convolutional classifiers add to `privaudit train`.
RNN_FIELDS = MAIN_FIELDS | {"arch", "dropout", "char_embeddings", "early_stopping", "validation"}


def test_the_fixed_fields_are_a_subset_of_the_jobs():
    assert MAIN_FIELDS <= {f.name for f in dataclasses.fields(TrainJob)}


@pytest.fixture(scope="module")
def study():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT))
        yield importlib.import_module("benchmarks.modiva_paper")


def _config(study, arch: str, defence: str, repeats: int = 10):
    return next(c for c in study.grid() if (c.arch, c.defence.name, c.repeats) == (arch, defence, repeats))


def test_the_grid_is_every_architecture_defence_and_repeat_count(study):
    configs = study.grid()
    assert len(configs) == 3 * 6 * 2 == len({c.name for c in configs})
    assert {c.arch for c in configs} == {"bilstm", "cnn", "bert"} and {c.repeats for c in configs} == {10, 100}
    assert [d.name for d in study.DEFENCES] == [
        "no defence",
        "dropout 0.5",
        "early stopping",
        "character embeddings",
        "DP ε 8",
        "all combined",
    ]
    assert study.MODELS >= 10


def test_the_paper_comparison_is_named_and_is_a_row_of_the_grid(study):
    named = study.PAPER_COMPARISON
    assert (named.arch, named.defence, named.repeats, named.paper_rate) == ("bilstm", "no defence", 100, 0.5)
    assert _config(study, named.arch, named.defence, named.repeats) is not None


@pytest.mark.parametrize(
    ("arch", "defence", "flags"),
    [
        ("bilstm", "no defence", "--arch"),
        ("cnn", "dropout 0.5", "--arch, --dropout"),
        ("bilstm", "early stopping", "--arch, --early-stopping, --validation"),
        ("cnn", "character embeddings", "--arch, --char-embeddings"),
        ("bert", "early stopping", "--early-stopping, --validation"),
    ],
)
def test_rows_this_checkout_cannot_train_are_skipped_naming_the_flag(study, arch, defence, flags):
    options, note = study.train_options(_config(study, arch, defence), MAIN_FIELDS)
    assert options == {} and note == f"needs {flags} (privaudit train; issue 19)"


def test_the_bert_rows_this_checkout_can_train(study):
    plain, note = study.train_options(_config(study, "bert", "no defence", 100), MAIN_FIELDS)
    assert note is None
    assert plain["architecture"] == Architecture(dropout=0.0)  # no defence: the fixture's BERT without dropout
    assert (plain["canary_count"], plain["canary_repeats"], plain["canary_controls"]) == (1, 100, study.CONTROLS)
    assert plain["canary_label"] == "new" and (plain["epochs"], plain["batch_size"]) == (30, 64)
    dropout, _ = study.train_options(_config(study, "bert", "dropout 0.5"), MAIN_FIELDS)
    assert dropout["architecture"] == Architecture(dropout=0.5)
    dp, _ = study.train_options(_config(study, "bert", "DP ε 8"), MAIN_FIELDS)
    assert dp["dp"] is True and dp["target_epsilon"] == 8.0 and (dp["batch_size"], dp["lr"]) == (256, 1e-2)
    _, note = study.train_options(_config(study, "bert", "character embeddings"), MAIN_FIELDS)
    assert note == "not applicable: --char-embeddings is for word models, not bert"
    for options in (plain, dropout, dp):
        assert set(options) <= MAIN_FIELDS  # each a flag of `privaudit train`, passed as it is


def test_with_the_recurrent_flags_every_word_model_row_is_trained_as_the_flags_say(study):
    combined, note = study.train_options(_config(study, "bilstm", "all combined"), RNN_FIELDS, label="new")
    assert note is None
    assert combined["arch"] == "bilstm" and combined["dropout"] == 0.5 and combined["char_embeddings"] is True
    assert combined["early_stopping"] == study.PATIENCE and combined["validation"].name == "non_members.jsonl"
    assert combined["dp"] is True and combined["canary_label"] == "new"
    # The transformer's "all combined" is every defence that applies to it; its dropout through the flag.
    bert, note = study.train_options(_config(study, "bert", "all combined"), RNN_FIELDS)
    assert note is None and "char_embeddings" not in bert and bert["dropout"] == 0.5 and "architecture" not in bert
    for arch, defence in ((a, d.name) for a in study.ARCHES for d in study.DEFENCES):
        options, note = study.train_options(_config(study, arch, defence), RNN_FIELDS)
        assert note is None or (arch, defence) == ("bert", "character embeddings")
        assert set(options) <= RNN_FIELDS


def test_with_this_checkouts_own_flags_no_row_is_skipped_and_each_is_a_valid_train_job(study, tmp_path):
    from privaudit.training.job import _check_flags

    fields = {f.name for f in dataclasses.fields(TrainJob)}
    for config in study.grid():
        options, note = study.train_options(config, fields)
        if (config.arch, config.defence.name) == ("bert", "character embeddings"):
            assert note.startswith("not applicable") and study.skipped(config, note)["status"] == "not applicable"
            continue
        assert note is None, config.name
        job = TrainJob(data=tmp_path / "d.jsonl", out=tmp_path / "m", canaries_out=tmp_path / "c.jsonl", **options)
        _check_flags(job)  # raises PrivauditError on a combination `privaudit train` refuses
        assert job.canary_label == "new" and job.canary_count == 1 and job.canary_repeats == config.repeats
        assert job.arch == config.arch
        assert bool(job.early_stopping) == ("early" in config.defence.name or config.defence.name == "all combined")


def test_left_out_names_the_rows_a_run_did_not_hold(study):
    rows = [
        study.summarise(c, _models(1, n=2))
        for c in study.grid()
        if c.arch == "bilstm" or (c.arch == "bert" and c.defence.name == "no defence")
    ]
    missing = study.left_out(rows)
    assert missing[0] == "cnn: every row"
    assert missing[1].startswith("bert: dropout 0.5 (10), dropout 0.5 (100), early stopping (10)")
    assert "character embeddings" not in missing[1]  # not applicable to a transformer, so never "not run"
    assert len(missing) == 2 and study.left_out(rows, [c for c in study.grid() if c.arch == "bilstm"]) == []


def test_the_run_order_starts_with_the_named_comparison_and_shards_split_it_exactly(study):
    plan = study.planned()
    named = study.PAPER_COMPARISON
    assert (plan[0].arch, plan[0].defence.name, plan[0].repeats) == (named.arch, named.defence, named.repeats)
    assert len({c.name for c in plan}) == len(plan) and all(c in study.grid() for c in plan)
    # Every defence on the BiLSTM at the named row's repeats comes before any 10-repeat row.
    head = [(c.arch, c.defence.name) for c in plan[:6]]
    assert head == [("bilstm", d.name) for d in study.DEFENCES] and {c.repeats for c in plan[:6]} == {100}
    shards = [study.shard_jobs(plan, 10, i, 3) for i in range(3)]
    pairs = [(c, seed) for c in plan for seed in range(10)]
    assert sorted(sum(shards, []), key=pairs.index) == pairs and sum(map(len, shards)) == len(pairs)
    assert shards[0][:4] == [(plan[0], 0), (plan[0], 3), (plan[0], 6), (plan[0], 9)]


def test_rates_carry_clopper_pearson_intervals(study):
    half = study.rate(5, 10)
    assert (half["hits"], half["n"], half["rate"]) == (5, 10, 0.5)
    assert (half["low"], half["high"]) == pytest.approx((0.18709, 0.81291), abs=1e-5)
    assert study.rate(0, 10)["high"] == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9)
    assert study.rate(10, 10)["low"] == pytest.approx(0.025 ** (1 / 10), abs=1e-9)
    assert study.rate(0, 0) == {"hits": 0, "n": 0, "rate": None, "low": None, "high": None}


def _models(hits: int, n: int = 10, search: int = 0) -> list[dict]:
    return [
        {
            "recovered": i < hits,
            "search_recovered": i < search,
            "exposure_rank": 1 if i < hits else 50,
            "train_accuracy": 0.9,
            "epsilon": None,
            "controls": [{"recovered": False}],
        }
        for i in range(n)
    ]


def test_summarise_counts_models_search_and_controls(study):
    row = study.summarise(_config(study, "bilstm", "no defence", 100), _models(6, search=2))
    assert (row["recovered"]["hits"], row["search_recovered"]["hits"], row["controls_recovered"]["hits"]) == (6, 2, 0)
    assert row["recovered"]["n"] == row["controls_recovered"]["n"] == 10
    assert row["median_exposure_rank"] == 1.0 and row["epsilon"] is None


def test_verdicts_are_read_from_the_rows(study):
    def row(defence: str, hits: int, arch: str = "bilstm") -> dict:
        return study.summarise(_config(study, arch, defence, 100), _models(hits))

    rows = [row("no defence", 6), row("dropout 0.5", 3), row("early stopping", 7), row("all combined", 0)]
    lines = study.verdicts(rows)
    assert lines[0] == (
        "Named before the run: bilstm, no defence, 100 repeats: 6/10 = 0.60 [0.26, 0.88]; the paper's 0.5 is inside "
        "or below the interval: reproduced."
    )
    assert "bilstm, 100 repeats: dropout 0.5 0.30 against no defence 0.60: lowers the rate: yes." in lines
    assert "bilstm, 100 repeats: early stopping 0.70 against no defence 0.60: lowers the rate: no." in lines
    assert "bilstm, 100 repeats: all combined 0.00 against no defence 0.60: gives 0: yes." in lines
    assert "bilstm, 100 repeats: 2 of 3 defences measured lower the rate (not: early stopping)." in lines
    bert = study.summarise(_config(study, "bert", "no defence", 100), _models(1))
    assert study.verdicts([*rows, bert])[-1] == (
        "Beside it, the tiny BERT, no defence, 100 repeats: 1/10 recovered (median loss rank 50) against the "
        "bilstm's 6/10 (median loss rank 1)."
    )
    # 1 of 10: [0.0025, 0.4450], wholly below the paper's 0.5.
    assert study.verdicts([row("no defence", 1)])[0].endswith("the paper's 0.5 is above the interval: not reproduced.")
    assert study.verdicts([row("no defence", 6, arch="cnn")]) == []  # the named row was not measured


def test_markdown_marks_a_partial_run_and_shows_skipped_rows(study):
    measured = study.summarise(_config(study, "bert", "no defence"), _models(1, n=2))
    skipped = study.skipped(_config(study, "bilstm", "no defence"), "needs --arch (privaudit train; issue 19)")
    data = {"what": "w", "full": False, "rows": [measured, skipped], "verdicts": []}
    text = "\n".join(study.markdown(data))
    assert "**Partial run**" in text
    assert "| bert | no defence | 10 | 1/2 0.50 [0.01, 0.99] | 0/2 0.00 [0.00, 0.84] |" in text
    assert "| bilstm | no defence | 10 | skipped: needs --arch (privaudit train; issue 19) |" in text
