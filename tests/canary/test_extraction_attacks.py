"""The extraction-attack base (``privaudit/canary/attack.py``), its registry, the built-ins and how a run selects them."""

from __future__ import annotations

import dataclasses
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from privaudit.canary.attack import TARGET_ACCESS, ExtractionAttack, ExtractionContext
from privaudit.canary.registry import ENTRY_POINT_GROUP, EXTRACTION
from privaudit.canary.run import CanaryRequest, _as_json, build_attacks, run_canary, selected_attacks
from privaudit.errors import PrivauditError
from privaudit.mia import registry as mia_registry
from privaudit.plugins import parse_attack_options
from privaudit.target import Target

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "fixtures" / "models" / "intent-tiny"


def request(**kw) -> CanaryRequest:
    return CanaryRequest(model_dir=TINY, canaries=Path(f"{TINY}.canaries.jsonl"), **kw)


class _ScoresOnly:
    """A target that gives black-box scores only, as a remote endpoint would."""

    path = "https://example.test/model"
    provides = frozenset({"scores"})


# --- the built-ins and the registry -----------------------------------------------------------------------------


def test_builtins_of_each_kind_stay_apart():
    assert EXTRACTION.names()[:2] == ["exposure", "modiva"]
    assert {"exposure", "modiva"}.isdisjoint(mia_registry.available_attacks())
    assert "loss" not in EXTRACTION.names()
    for name in ("exposure", "modiva"):
        cls = EXTRACTION.get_class(name)
        assert issubclass(cls, ExtractionAttack) and cls.requires <= TARGET_ACCESS
        assert cls.description and "\n" not in cls.description
    assert EXTRACTION.get_class("exposure").requires == {"scores"}
    # White-box inversion, and the label scores of texts for the exhaustive guess within its budget.
    assert EXTRACTION.get_class("modiva").requires == {"inputs_embeds", "scores"}


def test_modiva_parameters_are_modiva_config_with_the_same_defaults():
    from privaudit.canary.modiva import ModivaConfig

    params = EXTRACTION.create("modiva").get_params()
    config = ModivaConfig()
    assert params == {key: getattr(config, key) for key in params}
    assert set(params) | {"seed"} == {f.name for f in dataclasses.fields(ModivaConfig)}


def test_registry_rejects_a_membership_attack_and_unknown_needs():
    with pytest.raises(PrivauditError, match="is not a subclass of privaudit.canary.attack.ExtractionAttack"):
        EXTRACTION.register(mia_registry.get_attack_class("loss"))

    with pytest.raises(PrivauditError, match=r"extraction attack 'gradients' requires unknown \['gradients'\]"):

        @EXTRACTION.register
        class Gradients(ExtractionAttack):
            name = "gradients"
            description = "Needs what no target gives"
            requires = frozenset({"gradients"})

            def extract(self, target, canaries, context):
                return []

    with pytest.raises(PrivauditError, match="extraction attack name 'modiva' is taken"):

        @EXTRACTION.register
        class Impostor(ExtractionAttack):
            name = "modiva"
            description = "Not the real one"
            requires = frozenset({"scores"})

            def extract(self, target, canaries, context):
                return []

    assert "gradients" not in EXTRACTION.names()


class _FakeEntryPoint:
    def __init__(self, name: str, value: str, error: Exception):
        self.name, self.value, self.group, self._error, self.loads = name, value, ENTRY_POINT_GROUP, error, 0

    def load(self):
        self.loads += 1
        raise self._error


def test_plugins_of_the_other_group_are_not_mixed_in(monkeypatch):
    broken = _FakeEntryPoint("broken", "broken_pkg:Attack", ImportError("No module named 'torchx'"))

    def entry_points(*, group: str):
        return [broken] if group == ENTRY_POINT_GROUP else []

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    assert EXTRACTION.resolve("all") == ["exposure", "modiva", "broken"] and broken.loads == 0
    assert "broken" not in mia_registry.available_attacks()
    infos = {info.name: info for info in EXTRACTION.describe()}
    assert infos["broken"].kind == "extraction" and "torchx" in infos["broken"].error
    assert infos["modiva"].error is None and infos["modiva"].source == "built-in"
    with pytest.raises(PrivauditError, match=r"extraction attack plugin 'broken' \(broken_pkg:Attack\).*torchx"):
        build_attacks(request(attacks="exposure,broken"))
    assert [a.name for a in build_attacks(request())] == ["exposure", "modiva"]  # not selected: no harm


# --- what the target must give ----------------------------------------------------------------------------------


def test_a_white_box_attack_on_a_scores_only_target_names_what_is_missing():
    EXTRACTION.create("exposure").check(_ScoresOnly())
    with pytest.raises(PrivauditError) as err:
        EXTRACTION.create("modiva").check(_ScoresOnly())
    assert str(err.value) == (
        "extraction attack 'modiva' needs white-box access (gradients through inputs_embeds), which the target "
        "https://example.test/model does not give (it gives: scores); choose attacks that need only that"
    )
    assert Target.provides == {"scores", "inputs_embeds"}


def test_the_run_fails_before_any_work_when_the_target_lacks_what_an_attack_needs(monkeypatch):
    monkeypatch.setattr(Target, "provides", frozenset({"scores"}))
    monkeypatch.setattr(Target, "logits", lambda *a, **k: pytest.fail("scored before the check"))
    with pytest.raises(PrivauditError, match="extraction attack 'modiva' needs white-box access"):
        run_canary(request(attacks="exposure,modiva"))


def test_parameters_are_checked_before_any_canary_is_attacked():
    with pytest.raises(PrivauditError, match="modiva': steps must be a number, got 'many'"):
        build_attacks(request(attack_options=("modiva:steps=many",)))[1].check(_WhiteBox())
    for option in ("modiva:top_k=0", "modiva:rescore=0"):
        with pytest.raises(PrivauditError, match="ModIvA needs steps, restarts, top_k and rescore of at least 1"):
            build_attacks(request(attack_options=(option,)))[1].check(_WhiteBox())
    with pytest.raises(PrivauditError, match="'exposure': sample must be at least 3"):
        build_attacks(request(attack_options=("exposure:sample=2",)))[0].check(_WhiteBox())
    for option, message in (
        ("modiva:exact_budget=2e6", r"'modiva': ModIvA's exact_budget must be between 0 .* and 1,000,000"),
        ("modiva:exact_budget=-1", r"exact_budget must be between 0"),
        ("modiva:exact_budget=2.5", r"exact_budget must be a whole number of secrets, got 2.5"),
    ):
        with pytest.raises(PrivauditError, match=message):
            build_attacks(request(attack_options=(option,)))[1].check(_WhiteBox())
    # 1e5 reads as a float on the command line: a whole number is taken as one.
    assert (
        build_attacks(request(attack_options=("modiva:exact_budget=1e5",)))[1]._config(seed=0).exact_budget == 100_000
    )


class _WhiteBox:
    path = "models/target"
    provides = TARGET_ACCESS


# --- selection: --attack, --no-exposure, --no-extract, --attack-option -------------------------------------------


@pytest.mark.parametrize(
    ("kw", "names"),
    [
        ({}, ["exposure", "modiva"]),
        ({"exposure": False}, ["modiva"]),
        ({"extract": False}, ["exposure"]),
        ({"exposure": False, "extract": False}, []),
        ({"attacks": "modiva"}, ["modiva"]),
        ({"attacks": "modiva, exposure,modiva"}, ["modiva", "exposure"]),
        ({"attacks": "all"}, ["exposure", "modiva"]),
        ({"attacks": "all", "extract": False}, ["exposure"]),
        ({"attacks": "exposure", "extract": False}, ["exposure"]),
    ],
)
def test_selection(kw, names):
    assert selected_attacks(request(**kw)) == names


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"attacks": "exposure,modiva", "extract": False}, "--attack names 'modiva', which --no-extract turns off"),
        ({"attacks": "exposure", "exposure": False}, "--attack names 'exposure', which --no-exposure turns off"),
        ({"attacks": "exposure,nope"}, "unknown extraction attack 'nope'; choose from: all, exposure, modiva"),
        ({"attacks": " , "}, "no extraction attack given"),
    ],
)
def test_selection_errors(kw, message):
    with pytest.raises(PrivauditError, match=message):
        selected_attacks(request(**kw))


def test_options_set_parameters_and_win_over_the_dedicated_flags():
    exposure, modiva = build_attacks(
        request(sample=500, modiva_steps=50, attack_options=("modiva:steps=7", "modiva:lr=0.5"))
    )
    assert exposure.get_params() == {"sample": 500}
    assert (modiva.steps, modiva.restarts, modiva.lr) == (7, 16, 0.5)
    with pytest.raises(PrivauditError, match="--attack-option for 'modiva', which is not selected; selected: exposure"):
        build_attacks(request(attacks="exposure", attack_options=("modiva:steps=7",)))
    with pytest.raises(PrivauditError, match="extraction attack 'modiva' has no parameter 'seed'; it takes: steps"):
        build_attacks(request(attack_options=("modiva:seed=1",)))
    assert parse_attack_options(["modiva:steps=300"]) == {"modiva": {"steps": 300}}


# --- third-party results ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Found:
    guess: tuple[str, ...]
    score: float


class _WithToDict:
    def to_dict(self):
        return {"guess": ["1"], "score": np.float32(0.5), "ranks": np.arange(2)}


def test_results_become_json_objects():
    assert _as_json("x", {"guess": ("1", "2"), "recovered": np.bool_(True)}) == {"guess": ["1", "2"], "recovered": True}
    assert _as_json("x", _Found(("1",), 0.5)) == {"guess": ["1"], "score": 0.5}
    assert _as_json("x", _WithToDict()) == {"guess": ["1"], "score": 0.5, "ranks": [0, 1]}
    with pytest.raises(PrivauditError, match="extraction attack 'x' returned a float for a canary; return a dict"):
        _as_json("x", 0.5)
    with pytest.raises(PrivauditError, match="extraction attack 'x' returned a result that is not JSON"):
        _as_json("x", {"guess": object()})


def test_context_reports_progress_only_when_listened_to():
    seen = []
    ExtractionContext(progress=lambda *a: seen.append(a)).tell("stage", 1, 2)
    ExtractionContext().tell("stage", 1, 2)
    assert seen == [("stage", 1, 2)]
