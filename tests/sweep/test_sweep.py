"""``privaudit sweep`` (``privaudit/sweep/``, ``privaudit/cli/sweep.py``, ``privaudit/report/sweep_html.py``).

One sweep of three points (inf, 8, 1) on the fixture's 1,000 members and 1,000 non-members, trained once per session
through a small recipe that memorises: a one-layer BERT of width 64 without dropout, 30 epochs at lr 2e-3, with two reference
models per point (drawn from the fixture's population, trained under the point's own DP recipe). No DP point may show
an empirical bound above its epsilon, and the no-DP point must leak measurably more than the epsilon-1 point: a higher
TPR at 1% FPR, with 95% intervals that do not overlap, and likewise for AUC.

The low-FPR gap needs the reference-model attacks (RMIA, offline LiRA). LOSS's TPR at 1% FPR stays at 1-5% on this
templated data whatever the recipe, because the easiest non-members get as low a loss as members do; RMIA and LiRA
calibrate each example against models that did not train on it, and so find the members the model memorised (the
fixture's 8% noisy labels among them). Measured on this recipe: offline LiRA 8.5% [6.8%, 10.4%] without DP, every
attack at most 2.8% (upper end) at epsilon 1, with four reference models; with two (the suite's, for its time) 5.6%
[4.3%, 7.2%] against at most 2.3%. With 300 members the intervals overlapped, with 600 members and eight
reference models they nearly touched, and at lr 5e-3 the no-DP model fitted only 86% of its members once the canaries
were planted (93% at lr 2e-3) and the gap closed.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import asdict, replace
from functools import partial
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest
from conftest import FIXTURE_DATA, TINY_ARCH
from typer.testing import CliRunner

from privaudit.errors import PrivauditError
from privaudit.sweep import run as sweep_run
from privaudit.sweep.run import SweepRequest, SweepResult, parse_epsilons, point_jobs
from privaudit.training import job as trainjob
from privaudit.training.job import TrainJob
from privaudit.training.train import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
# Wide enough, long enough and without dropout to fit most of its members (the fixture's noisy labels included).
SWEEP_ARCH = replace(TINY_ARCH, hidden_size=64, intermediate_size=128, vocab_size=1000, dropout=0.0)
RECIPE = ("--epochs", 30, "--batch-size", 50, "--lr", 2e-3, "--max-length", 16)
CANARIES = ("--canary", "my pin code is {d} {d} {d} {d}", "--canary-label", "random", "--canary-count", 2)
CANARIES += ("--canary-repeats", 5, "--modiva-steps", 10, "--modiva-restarts", 2)
# White-box gradient canaries in the DP points (they leave the data path alone, so the other assertions stand).
GRADIENT = ("--gradient-canaries", 2000)
PNG = b"\x89PNG\r\n\x1a\n"


REFERENCE = ("--population", FIXTURE_DATA / "population.jsonl", "--reference-models", 2)
REFERENCE += ("--attack", "loss,lira-offline,rmia")


def _invoke(*args: object):
    from privaudit.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture(scope="session")
def swept(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sweep")
    members, non_members = FIXTURE_DATA / "members.jsonl", FIXTURE_DATA / "non_members.jsonl"
    args = ("sweep", members, "--epsilons", "inf,8,1", "--non-members", non_members, "--out", root / "out")
    args += (*RECIPE, *REFERENCE, *CANARIES, *GRADIENT, "--device", "cpu", "--fail-if-bound-exceeds-epsilon")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainjob, "TrainConfig", partial(TrainConfig, architecture=SWEEP_ARCH))
        result = _invoke(*args)
    return root, args, result


def _points(root: Path) -> dict[str, dict]:
    document = json.loads((root / "out" / "sweep.json").read_text())
    return {p["name"]: p for p in document["points"]}


def test_sweep_runs_every_point_and_passes_its_gate(swept) -> None:
    root, _, result = swept
    assert result.exit_code == 0, result.output
    points = _points(root)
    assert list(points) == ["eps-inf", "eps-8", "eps-1"]
    assert all(p["status"] == "trained" for p in points.values())
    assert points["eps-inf"]["epsilon"] is None and not points["eps-inf"]["dp"]
    for name, target in (("eps-8", 8.0), ("eps-1", 1.0)):
        assert points[name]["epsilon"] == pytest.approx(target, rel=0.02)  # the noise found for the target
        assert points[name]["noise_multiplier"] > 0
    assert "eps-8" in result.stdout and "privacy sweep" in result.stdout  # the Rich table


def test_every_dp_point_stays_below_its_epsilon(swept) -> None:
    root, _, _ = swept
    for point in _points(root).values():
        if point["epsilon"] is None:
            continue
        bounds = [a["epsilon_lower_bound"] for a in point["attacks"]]
        assert bounds and max(bounds) <= point["epsilon"]
        assert point["empirical_epsilon"]["lower_bound"] == max(bounds)


def test_every_dp_point_has_a_white_box_bound_below_its_epsilon(swept) -> None:
    root, _, result = swept
    points = _points(root)
    assert points["eps-inf"]["white_box"] is None  # no DP, no gradient canaries
    assert not (root / "out" / "points" / "eps-inf.canaries.gradient.npz").exists()
    for name in ("eps-8", "eps-1"):
        white = points[name]["white_box"]
        assert white["m"] == 2000 and white["assumes"] == "gaussian trade-off"
        assert 0 <= white["eps_delta"] <= points[name]["epsilon"]
        assert 0 <= white["gaussian"] <= points[name]["epsilon"] and white["steinke"] <= points[name]["epsilon"]
    assert points["eps-8"]["white_box"]["eps_delta"] > 0  # 2,000 canaries over 600 steps see something at eps 8
    assert "white-box ε ≥" in result.stdout


def test_no_dp_leaks_more_than_epsilon_one(swept) -> None:
    root, _, _ = swept
    points = _points(root)
    no_dp, one = ({a["name"]: a for a in points[name]["attacks"]} for name in ("eps-inf", "eps-1"))
    assert set(no_dp) == set(one) == {"loss", "lira-offline", "rmia"}
    # TPR at 1% FPR: the strongest attack without DP sits above every attack at epsilon 1, 95% intervals disjoint.
    strongest = max(no_dp.values(), key=lambda a: a["tpr_at_1%fpr"]["tpr"])
    assert strongest["name"] in ("lira-offline", "rmia")  # the calibrated attacks, not LOSS
    ceiling = max(a["tpr_at_1%fpr"]["high"] for a in one.values())
    assert strongest["tpr_at_1%fpr"]["low"] > ceiling, (strongest, one)
    for a in one.values():  # what epsilon 1 allows at 1% FPR (e * 1%) lies at or above each interval's low end
        assert a["tpr_at_1%fpr"]["low"] <= math.e * 0.01
    # AUC, and the empirical epsilon, tell the same.
    assert no_dp["loss"]["auc"]["low"] > one["loss"]["auc"]["high"], (no_dp["loss"]["auc"], one["loss"]["auc"])
    assert max(a["epsilon_lower_bound"] for a in no_dp.values()) > max(a["epsilon_lower_bound"] for a in one.values())
    assert max(a["epsilon_lower_bound"] for a in no_dp.values()) > 1.0
    # Utility falls with the privacy level, and the canaries were enumerated and ranked at every point.
    assert points["eps-inf"]["utility"]["accuracy"] > points["eps-1"]["utility"]["accuracy"]
    for p in points.values():
        assert 0 <= p["utility"]["macro_f1"] <= 1
        assert p["canaries"]["n_inserted"] == 2 and p["canaries"]["log2_space"] == pytest.approx(math.log2(10_000))


def test_sweep_json_follows_its_schema(swept) -> None:
    root, _, _ = swept
    schema = json.loads((ROOT / "docs" / "schema-sweep.json").read_text())
    document = json.loads((root / "out" / "sweep.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(document, schema)
    assert document["schema"] == sweep_run.SCHEMA


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def test_sweep_html_holds_four_png_plots(swept) -> None:
    root, _, _ = swept
    parser = _Images()
    parser.feed((root / "out" / "sweep.html").read_text(encoding="utf-8"))
    assert len(parser.sources) == 4
    for src in parser.sources:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        png = base64.b64decode(src[len(prefix) :], validate=True)
        assert png.startswith(PNG) and len(png) > 1000
        assert png[12:16] == b"IHDR" and int.from_bytes(png[16:20], "big") > 100  # a real image, width > 100 px
        assert png.rstrip(b"\x00")[-8:-4] == b"IEND" and binascii.crc32(png[12:29]) == int.from_bytes(png[29:33], "big")


def test_a_second_run_trains_nothing(swept, monkeypatch: pytest.MonkeyPatch) -> None:
    root, args, _ = swept

    def no_training(*_args, **_kwargs):
        raise AssertionError("a complete point was trained again")

    monkeypatch.setattr(sweep_run, "run_train", no_training)
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert all(p["status"] == "cached" for p in _points(root).values())


def test_a_changed_recipe_retrains(swept) -> None:
    root, _, _ = swept
    recorded = json.loads((root / "out" / "points" / "eps-inf.job.json").read_text())
    paths = {"data", "out", "base", "canaries_out"}
    values = {k: Path(v) if k in paths and v is not None else v for k, v in recorded.items()}
    job = TrainJob(**{**values, "lora_targets": tuple(values["lora_targets"])})
    assert sweep_run.is_complete(job)
    assert not sweep_run.is_complete(replace(job, epochs=job.epochs + 1))  # same directory, another recipe


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("inf,abc", "--epsilons: 'abc' is not a number"),
        ("8,0", "--epsilons: 0 is not above 0"),
        ("8,-2", "--epsilons: -2 is not above 0"),
        ("8,8", "--epsilons: 8 is given twice"),
        (",", "--epsilons is empty"),
    ],
)
def test_bad_epsilon_lists_exit_2_with_one_line(tmp_path: Path, text: str, complaint: str) -> None:
    result = _invoke(
        "sweep",
        FIXTURE_DATA / "members.jsonl",
        "--epsilons",
        text,
        "--non-members",
        FIXTURE_DATA / "non_members.jsonl",
        "--out",
        tmp_path / "out",
    )
    assert result.exit_code == 2
    assert complaint in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(PrivauditError):
        parse_epsilons(text)


def test_epsilons_parse() -> None:
    assert parse_epsilons("inf, 16,8,0.5") == [math.inf, 16.0, 8.0, 0.5]


def test_each_point_is_one_job_of_the_same_recipe(tmp_path: Path) -> None:
    recipe = TrainJob(data=Path("d.jsonl"), out=tmp_path, epochs=3, lr=0.1, canary="pin {d}", canary_label="a")
    request = SweepRequest(recipe=recipe, epsilons=(math.inf, 4.0), out=tmp_path, non_members=Path("n.jsonl"))
    jobs = point_jobs(request)
    assert [j.out.name for j in jobs] == ["eps-inf", "eps-4"]
    assert [(j.dp, j.target_epsilon) for j in jobs] == [(False, None), (True, 4.0)]
    assert all(j.epochs == 3 and j.lr == 0.1 and j.canaries_out.parent == tmp_path / "points" for j in jobs)


def test_the_gate_fails_on_a_bound_above_epsilon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = TrainJob(data=FIXTURE_DATA / "members.jsonl", out=tmp_path)
    request = SweepRequest(recipe=recipe, epsilons=(1.0,), out=tmp_path, non_members=FIXTURE_DATA / "non_members.jsonl")
    row = {
        "name": "eps-1",
        "target_epsilon": 1.0,
        "status": "cached",
        "model": "m",
        "dp": True,
        "epsilon": 1.0,
        "delta": 1e-5,
        "noise_multiplier": 2.0,
        "train_accuracy": 0.5,
        "trainable_parameters": 10,
        "utility": {"accuracy": 0.5, "macro_f1": 0.4, "n": 10},
        "attacks": [
            {
                "name": "loss",
                "auc": {"value": 0.9, "low": 0.8, "high": 0.95},
                "tpr_at_1%fpr": {"tpr": 0.5, "low": 0.4, "high": 0.6},
                "tpr_at_0.1%fpr": {"tpr": None, "low": None, "high": None},
                "advantage": 0.6,
                "epsilon_lower_bound": 1.7,
                "epsilon_lower_bound_50": 2.0,
            }
        ],
        "empirical_epsilon": {"attack": "loss", "lower_bound": 1.7, "median": 2.0, "confidence": 0.95},
        "canaries": None,
        "one_run": None,
    }
    result = SweepResult(request=request, points=[row])
    assert result.exceeded() == [("eps-1", "loss", 1.7, 1.0)]
    # The white-box audit's strict bound is gated too; its Gaussian-family bound (which assumes a curve) is not.
    white = {"m": 100, "alpha": 0.05, "eps_delta": 1.2, "gaussian": 3.0, "gaussian_mu": 1.0, "steinke": 0.9}
    below = {**row, "attacks": [], "white_box": {**white, "eps_delta": 0.5}}
    above = {**row, "attacks": [], "white_box": white}
    assert SweepResult(request=request, points=[below]).exceeded() == []
    assert SweepResult(request=request, points=[above]).exceeded() == [("eps-1", "white-box f-DP", 1.2, 1.0)]
    monkeypatch.setattr(sweep_run, "run_sweep", lambda *_a, **_k: result)
    args = (
        "sweep",
        FIXTURE_DATA / "members.jsonl",
        "--epsilons",
        "1",
        "--non-members",
        FIXTURE_DATA / "non_members.jsonl",
        "--out",
        tmp_path / "out",
    )
    assert _invoke(*args).exit_code == 0  # reported, not gated
    failed = _invoke(*args, "--fail-if-bound-exceeds-epsilon")
    assert failed.exit_code == 1 and "exceeds the theoretical ε 1.000" in failed.stderr


def test_a_record_with_relative_paths_or_another_device_still_matches(tmp_path: Path, monkeypatch) -> None:
    """A point recorded by an older privaudit (relative paths, the device kept) or trained on another device (a Ray
    worker, a GPU) is the same point: it is not trained again."""
    monkeypatch.chdir(tmp_path)
    older = TrainJob(data=Path("d.jsonl"), out=Path("sweep/points/eps-inf"), device="auto")
    recorded = json.loads(json.dumps(asdict(older), default=str))
    now = replace(older, data=tmp_path / "d.jsonl", out=tmp_path / "sweep" / "points" / "eps-inf", device="cuda")
    assert sweep_run._normal(recorded) == sweep_run._job_record(now)
    assert sweep_run._normal(recorded) != sweep_run._job_record(replace(now, lr=now.lr * 2))


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (
            ("--attack", "lira-offline"),
            "attack 'lira-offline' needs reference models: pass --reference-models K (K >= 1)",
        ),
        (("--attack", "lira-online", "--reference-models", 1), "pass --reference-models K (K >= 2)"),
        (("--attack", "rmia", "--reference-models", 2), "attack 'rmia' needs population examples"),
        (("--attack", "nope"), "unknown attack 'nope'"),
        (("--population", "missing.jsonl"), "missing.jsonl: --population file not found"),
    ],
)
def test_an_audit_that_cannot_run_is_refused_before_any_point_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: tuple, complaint: str
) -> None:
    def no_training(*_args, **_kwargs):
        raise AssertionError("a point trained before the audit was checked")

    monkeypatch.setattr(sweep_run, "run_train", no_training)
    members, non_members = FIXTURE_DATA / "members.jsonl", FIXTURE_DATA / "non_members.jsonl"
    result = _invoke("sweep", members, "--non-members", non_members, "--out", tmp_path / "out", *extra)
    assert result.exit_code == 2, result.output
    assert complaint in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists()
