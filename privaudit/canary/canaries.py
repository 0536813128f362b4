"""Canaries: secrets planted in training data, and the JSONL file that records them as audit ground truth.

A template such as ``"my pin code is {d} {d} {d} {d}"`` has slots; each slot draws from an alphabet (``{d}``: digits,
``{l}``: lower-case letters). A canary record holds the template, each slot's alphabet, the secret, the label it was
trained with, how often it was repeated, and whether it was inserted at all: never-inserted controls are drawn from the
same space and are part of every audit (Carlini et al. 2019, "The Secret Sharer"). One-run audit canaries (Steinke, Nasr,
Jagielski 2023) are inserted each with probability 1/2 and carry a random label, so that inclusion is what the model
must memorise.
"""

from __future__ import annotations

import contextlib
import json
import re
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from privaudit.errors import PrivauditError
from privaudit.textfile import json_lines

ALPHABETS = {"d": tuple(string.digits), "l": tuple(string.ascii_lowercase)}
SLOT = re.compile(r"\{([a-z]+)\}")
# The kind of the white-box gradient canaries' lines (privaudit.training.gradient_canaries), skipped here.
GRADIENT_KIND = "gradient"
# The kind of the data canaries' lines (privaudit.canary.plant), skipped here too.
DATA_KIND = "data"


@dataclass(frozen=True)
class Canary:
    """One planted (or control) secret.

    Attributes:
        template: text with ``{slot}`` markers.
        alphabets: the values each slot may take, one list per slot in order.
        secret: the value of each slot.
        label: the label the canary was (or would have been) trained with.
        repeats: how many copies were inserted (0 for a control).
        inserted: whether the canary was in the training data.
        kind: ``"exposure"`` for Secret Sharer canaries and controls, ``"audit"`` for one-run audit canaries.
    """

    template: str
    alphabets: tuple[tuple[str, ...], ...]
    secret: tuple[str, ...]
    label: str
    repeats: int
    inserted: bool
    kind: str = "exposure"
    text: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", fill(self.template, self.secret))

    def to_json(self) -> str:
        record = asdict(self)
        record["alphabets"] = [list(a) for a in self.alphabets]
        record["secret"] = list(self.secret)
        return json.dumps(record, sort_keys=True)


def parse_template(template: str) -> tuple[tuple[str, ...], ...]:
    """The alphabet of each slot of a template.

    Raises:
        PrivauditError: no slot, or an unknown slot kind.
    """
    kinds = SLOT.findall(template)
    if not kinds:
        raise PrivauditError(f"canary template '{template}' has no slot; mark secret positions with {{d}} or {{l}}")
    unknown = sorted(set(kinds) - set(ALPHABETS))
    if unknown:
        raise PrivauditError(
            f"canary template '{template}': unknown slot {{{unknown[0]}}}; use {{d}} (digit) or {{l}} (letter)"
        )
    return tuple(ALPHABETS[k] for k in kinds)


def fill(template: str, secret: Sequence[str]) -> str:
    """Put the secret's values into the template's slots, in order."""
    values = iter(secret)
    try:
        return SLOT.sub(lambda _match: next(values), template)
    except StopIteration as err:
        raise PrivauditError(f"canary secret {list(secret)} has fewer values than '{template}' has slots") from err


def draw_canaries(
    *,
    template: str,
    label: str | Sequence[str],
    count: int,
    repeats: int,
    controls: int,
    rng: np.random.Generator,
) -> list[Canary]:
    """Draw ``count`` distinct secrets to insert ``repeats`` times each and ``controls`` never-inserted ones.

    ``label`` is one label for every canary, or a list to draw each canary's label from at random: then the model
    can only fit the canaries by their secrets, as with a real secret that decides the output.
    """
    alphabets = parse_template(template)
    space = int(np.prod([len(a) for a in alphabets], dtype=np.float64))
    if count + controls > space:
        raise PrivauditError(f"canary template '{template}' has only {space} secrets; ask for fewer canaries")
    seen: set[tuple[str, ...]] = set()
    canaries = []
    while len(canaries) < count + controls:
        secret = tuple(str(a[rng.integers(len(a))]) for a in alphabets)
        if secret in seen:
            continue
        seen.add(secret)
        inserted = len(canaries) < count
        canaries.append(
            Canary(
                template=template,
                alphabets=alphabets,
                secret=secret,
                label=label if isinstance(label, str) else str(label[rng.integers(len(label))]),
                repeats=repeats if inserted else 0,
                inserted=inserted,
            )
        )
    return canaries


def draw_audit_canaries(
    *, template: str, labels: Sequence[str], count: int, rng: np.random.Generator, exclude: set[str]
) -> list[Canary]:
    """One-run audit canaries: random secret, random label, each inserted once with probability 1/2.

    Raises:
        PrivauditError: the template has fewer secrets than ``count`` beyond those in ``exclude``.
    """
    alphabets = parse_template(template)
    space = int(np.prod([len(a) for a in alphabets], dtype=np.float64))
    matcher = _matcher(template)
    taken = sum(1 for text in exclude if matcher.fullmatch(text))
    if count > space - taken:  # else the loop below would draw forever
        raise PrivauditError(
            f"audit template '{template}' has only {space - taken} unused secrets; ask for fewer audit canaries"
        )
    seen = set(exclude)
    canaries = []
    while len(canaries) < count:
        secret = tuple(str(a[rng.integers(len(a))]) for a in alphabets)
        text = fill(template, secret)
        if text in seen:
            continue
        seen.add(text)
        inserted = bool(rng.integers(2))
        canaries.append(
            Canary(
                template=template,
                alphabets=alphabets,
                secret=secret,
                label=str(labels[rng.integers(len(labels))]),
                repeats=1 if inserted else 0,
                inserted=inserted,
                kind="audit",
            )
        )
    return canaries


def _matcher(template: str) -> re.Pattern[str]:
    """A regex for every text the template can produce."""
    parts = SLOT.split(template)  # literal, kind, literal, kind, ..., literal
    pattern = "".join(
        re.escape(part) if i % 2 == 0 else f"[{re.escape(''.join(ALPHABETS[part]))}]" for i, part in enumerate(parts)
    )
    return re.compile(pattern)


def planted_examples(canaries: Sequence[Canary]) -> list[tuple[str, str]]:
    """The (text, label) pairs a canary set adds to the training data."""
    return [(c.text, c.label) for c in canaries for _ in range(c.repeats) if c.inserted]


def write_canaries(path: Path, canaries: Sequence[Canary], *, extra_lines: Sequence[str] = ()) -> None:
    """Write canary records as JSONL, atomically, followed by ``extra_lines`` (other kinds of canary, as JSON).

    Raises:
        PrivauditError: the file cannot be written.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [c.to_json() for c in canaries] + list(extra_lines)
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        tmp.replace(path)
    except OSError as err:
        with contextlib.suppress(OSError):  # the parent may be missing or a file: nothing to clean then
            tmp.unlink()
        raise PrivauditError(f"{path}: cannot write the canary file ({err.strerror or err})") from err


def _field(obj: dict, name: str, kind: type | tuple[type, ...], where: str, *, default: object = ...) -> object:
    """``obj[name]``, checked to be of ``kind`` (``bool`` is never an ``int``); the message names the line and field."""
    if name not in obj:
        if default is ...:
            raise PrivauditError(f"{where}: field '{name}' is missing; a canary needs 'template', 'secret' and 'label'")
        return default
    value = obj[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        expected = " or ".join(
            {str: "text", int: "a whole number", bool: "true/false", list: "a list"}[k] for k in kinds
        )
        raise PrivauditError(f"{where}: field '{name}' must be {expected}, got {json.dumps(value)[:40]}")
    return value


def _canary_from_record(obj: dict, where: str) -> Canary:
    """One canary from its record, field by field.

    Raises:
        PrivauditError: names the line and the field.
    """
    template = _field(obj, "template", str, where)
    secret = _field(obj, "secret", list, where)
    label = _field(obj, "label", (str, int), where)
    if not all(isinstance(v, str) for v in secret):
        raise PrivauditError(f"{where}: field 'secret' must be a list of texts, got {json.dumps(secret)[:40]}")
    alphabets = _field(obj, "alphabets", list, where, default=None)
    if alphabets is not None and not all(isinstance(a, list) and all(isinstance(x, str) for x in a) for a in alphabets):
        raise PrivauditError(f"{where}: field 'alphabets' must be a list of lists of texts, one per slot")
    inserted = _field(obj, "inserted", bool, where, default=True)
    repeats = _field(obj, "repeats", int, where, default=1 if inserted else 0)
    if repeats < 0:
        raise PrivauditError(f"{where}: field 'repeats' must be 0 or more, got {repeats}")
    kind = _field(obj, "kind", str, where, default="exposure")
    n_slots = len(SLOT.findall(template))
    if n_slots == 0:
        raise PrivauditError(f"{where}: field 'template' ('{template[:60]}') has no slot")
    try:
        alphabets = tuple(tuple(a) for a in alphabets or parse_template(template))
    except PrivauditError as err:
        raise PrivauditError(f"{where}: field 'template': {err}") from None
    if len(alphabets) != n_slots or len(secret) != n_slots:
        raise PrivauditError(f"{where}: field 'secret' {secret} does not fit the {n_slots} slots of '{template[:60]}'")
    for value, alphabet in zip(secret, alphabets):
        if value not in alphabet:
            raise PrivauditError(f"{where}: field 'secret': value '{value}' is not in its slot's alphabet")
    return Canary(
        template=template,
        alphabets=alphabets,
        secret=tuple(secret),
        label=str(label),
        repeats=repeats,
        inserted=inserted,
        kind=kind,
    )


def read_canaries(path: str | Path) -> list[Canary]:
    """Read and validate a canary file.

    Raises:
        PrivauditError: missing file, malformed line, missing fields, a secret that does not fit its template.
    """
    path = Path(path)
    if not path.is_file():
        raise PrivauditError(f"{path}: no such canary file; 'privaudit train --canaries-out FILE' writes one")
    canaries = []
    gradient = data = 0
    for where, obj in json_lines(path, what="canary file", hint="; each line needs 'template', 'secret' and 'label'"):
        if not isinstance(obj, dict):
            raise PrivauditError(f"{where}: a canary record must be a JSON object")
        if obj.get("kind") == GRADIENT_KIND:
            gradient += 1  # white-box gradient canaries: privaudit.training.gradient_canaries reads them
            continue
        if obj.get("kind") == DATA_KIND:
            data += 1  # data canaries of privaudit plant: privaudit.canary.data_canaries reads them
            continue
        canaries.append(_canary_from_record(obj, where))
    if not canaries and data:
        raise PrivauditError(
            f"{path}: holds data canaries (privaudit plant); audit them with "
            "'privaudit dp-audit MODEL_DIR --base BASE --canaries FILE'"
        )
    if not canaries and gradient:
        raise PrivauditError(
            f"{path}: holds only gradient canaries, which the weights cannot show; "
            "audit them with 'privaudit dp-audit MODEL_DIR --canaries FILE'"
        )
    if not canaries:
        raise PrivauditError(f"{path}: the canary file is empty")
    return canaries
