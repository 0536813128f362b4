"""Wire formats of remote classifiers: what to send, and how to read what comes back.

Two formats, chosen with ``--endpoint-format``:

- ``v2``: the Open Inference Protocol of KServe, Triton and MLServer. ``--endpoint`` is the model's URL up to its name,
  ``http://host:port/v2/models/NAME``; privaudit posts to ``{url}/infer``::

      {"inputs": [{"name": "text", "shape": [n], "datatype": "BYTES", "data": [texts]}]}

  and reads the first output tensor: numbers of shape ``[n, C]`` are class probabilities (columns in the order of the
  tensor's ``parameters.labels`` when the server gives them (a list, or comma-separated), else ``--endpoint-labels``, else the data's label names
  sorted, as ``privaudit train`` numbers them); a ``BYTES`` tensor of shape ``[n]`` holds predicted labels only.
- ``hf``: Hugging Face text classification (``transformers`` pipelines, HF Inference Endpoints). ``--endpoint`` is the
  URL to post to; the body is ``{"inputs": [texts]}`` and the answer a list with, per input, a list of
  ``{"label", "score"}`` (or one such object: the top class only). Every class present: probabilities; fewer: top-k;
  objects without ``score``: labels only.

Every answer is normalised to a :class:`Prediction` (a label-to-score map, or a label), which is what the cache keeps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from privaudit.errors import PrivauditError

FORMATS = ("v2", "hf")
QUOTE_CHARS = 200
SUM_TOLERANCE = 1e-3  # a row of every class's probabilities must sum to 1 within this

# What an endpoint returns, from the most to the least: the attack signals each one supplies.
PROBABILITIES = "probabilities"
TOP_K = "top-k"
LABELS = "labels"


@dataclass(frozen=True)
class Prediction:
    """One text's answer: the scores of the classes returned (possibly none), and the predicted label.

    Attributes:
        label: the predicted (top) label's name.
        scores: label name to probability, for the classes the endpoint returned; empty for a label-only answer.
    """

    label: str
    scores: dict[str, float]

    def to_json(self) -> dict:
        return {"label": self.label, "scores": self.scores}

    @classmethod
    def from_json(cls, record: dict) -> Prediction:
        return cls(label=str(record["label"]), scores={str(k): float(v) for k, v in record["scores"].items()})


def normalise(body: str | bytes) -> str:
    """A response body as text on one line: decoded (bad bytes replaced) and its runs of whitespace made one space."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return " ".join(text.split())


def quote(body: str | bytes, scrub: Callable[[str], str] | None = None) -> str:
    """At most ``QUOTE_CHARS`` characters of a response body, on one line, for an error message.

    ``scrub`` (:class:`privaudit.endpoint.scrub.Scrubber`) runs on the whole text *before* it is cut, so a secret
    that straddles the cut is removed whole.
    """
    text = normalise(body)
    if scrub is not None:
        text = scrub(text)
    return text[:QUOTE_CHARS] + ("..." if len(text) > QUOTE_CHARS else "")


def infer_url(url: str, fmt: str) -> str:
    """The URL to post to: ``{url}/infer`` for ``v2``, ``url`` itself for ``hf``."""
    check_format(fmt)
    url = url.rstrip("/")
    if fmt == "v2":
        if url.endswith("/infer"):
            url = url[: -len("/infer")]
        if "/v2/models/" not in url:
            raise PrivauditError(
                f"--endpoint {url}: a v2 endpoint is the model's URL up to its name, e.g. http://host:8080/v2/models/NAME"
            )
        return url + "/infer"
    return url


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise PrivauditError(f"--endpoint-format {fmt!r}: choose from {', '.join(FORMATS)}")


def request_body(fmt: str, texts: Sequence[str]) -> dict:
    """The JSON body that asks for ``texts``."""
    if fmt == "v2":
        return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": list(texts)}]}
    return {"inputs": list(texts)}


def parse_response(
    fmt: str,
    body: bytes,
    *,
    n: int,
    label_names: Sequence[str] | None,
    scrub: Callable[[str], str] | None = None,
) -> list[Prediction]:
    """Read one batch's answer.

    Args:
        fmt: ``"v2"`` or ``"hf"``.
        body: the response body.
        n: how many texts were sent.
        label_names: class names in column order for a ``v2`` probability tensor without ``parameters.labels``.
        scrub: removes header values from the server's text before any of it is quoted (the client's scrubber).

    Returns:
        ``n`` predictions, in the order the texts were sent.

    Raises:
        PrivauditError: the body is not what the format promises; the message quotes at most 200 characters of it.
    """
    try:
        doc = json.loads(body)
        predictions = _parse_v2(doc, n, label_names) if fmt == "v2" else _parse_hf(doc, n)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        reason = scrub(reason) if scrub is not None else reason  # scrubbed before it is cut, as the body is
        raise PrivauditError(
            f"the endpoint's answer is not the '{fmt}' format ({reason[:80]}): {quote(body, scrub)!r}"
        ) from None
    return predictions


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"score {value!r} is not a finite number")
    if not -1e-6 <= value <= 1 + 1e-6:
        raise ValueError(f"score {value!r} is not a probability")
    return float(value)


def check_sum(values: Sequence[float], *, complete: bool, index: int) -> None:
    """Refuse probabilities that cannot be a distribution: a row of every class must sum to 1 within
    :data:`SUM_TOLERANCE`; a top-k row (``complete=False``) must not sum above it.

    Log-probabilities stand in for logits only when the numbers are probabilities (``softmax(log p) = p``); a row
    summing to 18 would be audited as a different function from the one the endpoint computes.

    Raises:
        ValueError: the row, by its 0-based index in the answer, and its sum.
    """
    total = math.fsum(values)
    if total > 1 + SUM_TOLERANCE or (complete and total < 1 - SUM_TOLERANCE):
        raise ValueError(
            f"answer {index}'s probabilities sum to {total:.6g}, not 1 (within {SUM_TOLERANCE:g}); "
            "privaudit audits calibrated probabilities only"
        )


def _parse_v2(doc: Any, n: int, label_names: Sequence[str] | None) -> list[Prediction]:
    outputs = doc["outputs"]
    if not isinstance(outputs, list) or not outputs:
        raise ValueError("no 'outputs' tensor")
    tensor = outputs[0]
    shape, data, datatype = tensor["shape"], tensor["data"], str(tensor.get("datatype", ""))
    if not isinstance(data, list):
        raise ValueError("'data' is not a list")
    if datatype == "BYTES":
        if list(shape) not in ([n], [n, 1]) or len(data) != n:
            raise ValueError(f"a label tensor of shape {shape} for {n} texts")
        return [Prediction(label=str(label), scores={}) for label in data]
    if len(shape) != 2 or shape[0] != n:
        raise ValueError(f"a probability tensor of shape {shape} for {n} texts; expected [{n}, classes]")
    columns = shape[1]
    flat = data if not data or not isinstance(data[0], list) else [x for row in data for x in row]
    if len(flat) != n * columns:
        raise ValueError(f"{len(flat)} numbers for shape {shape}")
    names = (tensor.get("parameters") or {}).get("labels") or label_names
    if isinstance(names, str):  # Open Inference Protocol parameters are scalars: names travel comma-separated
        names = names.split(",")
    if names is None or len(names) != columns:
        raise ValueError(
            f"{columns} probability columns but {0 if names is None else len(names)} label names; "
            "give them with --endpoint-labels"
        )
    names = [str(x) for x in names]
    out = []
    for i in range(n):
        row = [_number(x) for x in flat[i * columns : (i + 1) * columns]]
        check_sum(row, complete=True, index=i)
        scores = dict(zip(names, row))
        out.append(Prediction(label=max(scores, key=scores.__getitem__), scores=scores))
    return out


def _parse_hf(doc: Any, n: int) -> list[Prediction]:
    if isinstance(doc, dict) and "error" in doc:
        raise ValueError(f"the server answered an error: {doc['error']}")  # cut after scrubbing
    if not isinstance(doc, list) or len(doc) != n:
        raise ValueError(f"expected a list of {n} answers, one per text")
    out = []
    for item in doc:
        entries = [item] if isinstance(item, dict) else item
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise ValueError("an answer is not a list of {label, score} objects")
        if all("score" not in e for e in entries):
            out.append(Prediction(label=str(entries[0]["label"]), scores={}))
            continue
        scores = {str(e["label"]): _number(e["score"]) for e in entries}
        check_sum(list(scores.values()), complete=False, index=len(out))  # may be top-k: only above 1 is refused here
        out.append(Prediction(label=max(scores, key=scores.__getitem__), scores=scores))
    return out
