"""Wire formats, the response cache, header parsing and the remote target, without a server."""

from __future__ import annotations

import json

import numpy as np
import pytest

from privaudit.endpoint.cache import ResponseCache
from privaudit.endpoint.client import EndpointClient, EndpointConfig, parse_header
from privaudit.endpoint.formats import Prediction, infer_url, parse_response, request_body
from privaudit.endpoint.remote import RemoteTarget
from privaudit.errors import PrivauditError


def test_v2_request_and_probability_response():
    assert request_body("v2", ["a", "b"]) == {
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]
    }
    body = {
        "outputs": [
            {
                "name": "p",
                "shape": [2, 2],
                "datatype": "FP64",
                "data": [0.9, 0.1, 0.2, 0.8],
                "parameters": {"labels": "x,y"},
            }
        ]
    }
    got = parse_response("v2", json.dumps(body).encode(), n=2, label_names=None)
    assert got == [Prediction("x", {"x": 0.9, "y": 0.1}), Prediction("y", {"x": 0.2, "y": 0.8})]


def test_v2_labels_only_and_names_from_the_audit():
    labels = {"outputs": [{"name": "label", "shape": [2], "datatype": "BYTES", "data": ["y", "x"]}]}
    assert parse_response("v2", json.dumps(labels).encode(), n=2, label_names=None) == [
        Prediction("y", {}),
        Prediction("x", {}),
    ]
    nameless = {"outputs": [{"name": "p", "shape": [1, 2], "datatype": "FP32", "data": [[0.3, 0.7]]}]}
    assert parse_response("v2", json.dumps(nameless).encode(), n=1, label_names=["a", "b"])[0].label == "b"
    with pytest.raises(PrivauditError, match="--endpoint-labels"):
        parse_response("v2", json.dumps(nameless).encode(), n=1, label_names=None)


def test_hf_full_top_k_and_label_only_answers():
    full = [[{"label": "a", "score": 0.7}, {"label": "b", "score": 0.3}]]
    assert parse_response("hf", json.dumps(full).encode(), n=1, label_names=None)[0].scores == {"a": 0.7, "b": 0.3}
    top1 = [{"label": "b", "score": 0.6}]  # a pipeline's top-1 answer: one object per text
    assert parse_response("hf", json.dumps(top1).encode(), n=1, label_names=None) == [Prediction("b", {"b": 0.6})]
    labels = [[{"label": "a"}]]
    assert parse_response("hf", json.dumps(labels).encode(), n=1, label_names=None) == [Prediction("a", {})]


@pytest.mark.parametrize(
    ("fmt", "body"),
    [
        ("hf", b"<html>" + b"x" * 1000),
        ("hf", b'[{"label": "a", "score": 7}]'),  # not a probability
        ("hf", b'[[{"label": "a", "score": 0.5}]]' * 1),  # one answer for two texts
        ("v2", b'{"outputs": [{"name": "p", "shape": [3, 2], "datatype": "FP64", "data": [0.5, 0.5]}]}'),
        ("v2", b'{"error": "no"}'),
    ],
)
def test_a_body_out_of_format_is_one_line_quoting_at_most_200_characters(fmt, body):
    with pytest.raises(PrivauditError) as err:
        parse_response(fmt, body, n=2 if fmt == "hf" else 3, label_names=["a", "b"])
    message = str(err.value)
    assert f"is not the '{fmt}' format" in message and "\n" not in message
    assert len(message) < 200 + 160


def test_v2_url_is_the_model_url():
    assert infer_url("http://h:1/v2/models/m", "v2") == "http://h:1/v2/models/m/infer"
    assert infer_url("http://h:1/v2/models/m/infer", "v2") == "http://h:1/v2/models/m/infer"
    with pytest.raises(PrivauditError, match="/v2/models/NAME"):
        infer_url("http://h:1/predict", "v2")


def test_headers_come_from_the_environment_only():
    assert parse_header("Authorization=@TOKEN", environ={"TOKEN": "Bearer t"}) == ("Authorization", "Bearer t")
    for spec in ("Authorization=Bearer t", "Authorization=@UNSET", "no equals"):
        with pytest.raises(PrivauditError) as err:
            parse_header(spec, environ={})
        assert "Bearer t" not in str(err.value)


def test_secrets_are_kept_out_of_repr_and_scrubbed():
    config = EndpointConfig(url="http://127.0.0.1:9/v2/models/m", headers={"Authorization": "Bearer hush"})
    assert "hush" not in repr(config) and "hush" not in json.dumps(config.describe())
    with EndpointClient(config) as client:
        assert client.scrub("failed with Bearer hush") == "failed with ***"


def test_insecure_warns_loudly(capsys):
    EndpointClient(EndpointConfig(url="https://example.invalid/", fmt="hf", verify=False)).close()
    assert "NOT verified" in capsys.readouterr().err


def test_the_cache_survives_a_torn_last_line(tmp_path):
    cache = ResponseCache(tmp_path, endpoint="http://h/", fmt="hf")
    cache.add(["a", "b"], [Prediction("x", {"x": 1.0}), Prediction("y", {})])
    with cache.path.open("a") as handle:
        handle.write('{"key": "abc", "label": "x", "sco')  # a kill in the middle of a write
    again = ResponseCache(tmp_path, endpoint="http://h/", fmt="hf")
    assert len(again) == 2 and again.get("a") == Prediction("x", {"x": 1.0}) and again.missing(["a", "c"]) == ["c"]
    again.add(["c"], [Prediction("x", {})])  # appended on a fresh line, not glued to the torn one
    assert len(ResponseCache(tmp_path, endpoint="http://h/", fmt="hf")) == 3
    # Another endpoint, or another format, has its own answers.
    assert len(ResponseCache(tmp_path, endpoint="http://h/", fmt="v2")) == 0
    cache.add(["my pin code is 1 2 3 4"], [Prediction("x", {})])
    assert "pin code" not in cache.path.read_text()  # texts are stored as hashes only


def test_a_budget_below_what_is_needed_asks_nothing(tmp_path):
    config = EndpointConfig(url="http://127.0.0.1:9/", fmt="hf", max_queries=1)
    target = RemoteTarget(config, label_names=["x"], cache_dir=tmp_path)
    with pytest.raises(PrivauditError, match="needs 2 texts.*--max-queries is 1"):
        target.outputs(["a", "b", "a"])
    target.cache.add(["a"], [Prediction("x", {"x": 1.0})])
    out = RemoteTarget(config, label_names=["x"], cache_dir=tmp_path).outputs(["a"])  # cached: free
    assert out.returns == "probabilities" and np.allclose(out.log_probs, 0.0)


def test_headers_config_key_takes_env_references_only(tmp_path):
    from privaudit.config import load_config

    good = tmp_path / "privaudit.toml"
    good.write_text('[mia]\nendpoint = "http://h/v2/models/m"\nheaders = { Authorization = "@AUDIT_TOKEN" }\n')
    assert load_config(good, "mia").defaults["header"] == ["Authorization=@AUDIT_TOKEN"]
    bad = tmp_path / "bad" / "privaudit.toml"
    bad.parent.mkdir()
    bad.write_text('[canary]\nheaders = { Authorization = "Bearer literal-secret" }\n')
    with pytest.raises(PrivauditError) as err:
        load_config(bad, "canary")
    assert "headers" in str(err.value) and "literal-secret" not in str(err.value)
