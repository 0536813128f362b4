"""``privaudit sweep --group-by``: the theory-vs-practice sweep per user, on a slice of the fixture's users.

Two points (inf, 8) of a tiny BERT on the first 300 records of fixtures/data/users/members.jsonl, audited with LOSS
against 300 non-member records: small, so the numbers say little; the test checks the plumbing (users counted, the
group-privacy ε beside each DP point's per-user bound, the schema, the plot).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
USERS = ROOT / "fixtures" / "data" / "users"


def _head(src: Path, dst: Path, n: int) -> Path:
    dst.write_text("".join(src.read_text(encoding="utf-8").splitlines(keepends=True)[:n]), encoding="utf-8")
    return dst


@pytest.fixture(scope="module")
def user_sweep(tmp_path_factory):
    from functools import partial

    from typer.testing import CliRunner

    from privaudit.cli.app import app
    from privaudit.training import job as trainjob
    from privaudit.training.train import TrainConfig
    from tests.conftest import TINY_ARCH

    root = tmp_path_factory.mktemp("user-sweep")
    members = _head(USERS / "members.jsonl", root / "members.jsonl", 300)
    non_members = _head(USERS / "non_members.jsonl", root / "non_members.jsonl", 300)
    args = ["sweep", members, "--epsilons", "inf,8", "--non-members", non_members, "--out", root / "out"]
    args += ["--group-by", "user_id", "--group-aggregate", "mean", "--epochs", 3, "--batch-size", 50]
    args += ["--max-length", 16, "--device", "cpu"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainjob, "TrainConfig", partial(TrainConfig, architecture=TINY_ARCH))
        result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return root, result


def test_sweep_by_user_counts_users_and_sets_group_privacy_beside_each_point(user_sweep):
    root, result = user_sweep
    assert result.exit_code == 0, result.output
    document = json.loads((root / "out" / "sweep.json").read_text(encoding="utf-8"))
    jsonschema.validate(document, json.loads((ROOT / "docs" / "schema-sweep.json").read_text(encoding="utf-8")))
    assert document["group_by"] == "user_id"
    members = [json.loads(line) for line in (root / "members.jsonl").open(encoding="utf-8")]
    n_users = len({r["user_id"] for r in members})
    sizes = {}
    for r in members:
        sizes[r["user_id"]] = sizes.get(r["user_id"], 0) + 1
    points = {p["name"]: p for p in document["points"]}
    assert set(points) == {"eps-inf", "eps-8"}
    for point in points.values():
        users = point["users"]
        assert users["n_members"] == n_users and users["aggregate"] == "mean"
        assert users["max_records"] >= max(sizes.values())
        assert point["attacks"][0]["auc"]["value"] is not None
    assert points["eps-inf"]["users"]["group_privacy"] is None
    group = points["eps-8"]["users"]["group_privacy"]
    k, eps = group["k"], points["eps-8"]["epsilon"]
    assert group["epsilon"] == pytest.approx(k * eps)
    html = (root / "out" / "sweep.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html


def test_sweep_by_user_refuses_a_user_on_both_sides_before_training(tmp_path, run_cli):
    members = [json.loads(line) for line in (USERS / "members.jsonl").open(encoding="utf-8")][:50]
    non_members = [json.loads(line) for line in (USERS / "non_members.jsonl").open(encoding="utf-8")][:50]
    non_members[0]["user_id"] = members[0]["user_id"]
    for name, records in (("m", members), ("n", non_members)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli(
        "sweep",
        tmp_path / "m.jsonl",
        "--epsilons",
        "inf",
        "--non-members",
        tmp_path / "n.jsonl",
        "--out",
        out,
        "--group-by",
        "user_id",
    )
    assert result.exit_code == 2
    assert f"user '{members[0]['user_id']}' has records in both" in result.stderr
    assert not (out / "points").exists()
