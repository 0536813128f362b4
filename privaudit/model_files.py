"""Model directories checked before torch or transformers touch them: one line naming the file, never a crash.

A model directory is untrusted input. Here, with nothing but bounded reads of the files:

- no file in it is a symbolic link out of the directory (a ``model.safetensors`` pointing at a system file);
- every ``*.safetensors`` file is safetensors: an 8-byte little-endian header length, at most
  :data:`MAX_HEADER_BYTES`, a JSON header whose tensors' offsets cover the data exactly (a truncated file fails);
- ``config.json`` names its labels (``id2label``), as many as the classification head has rows;
- ``privaudit.json``'s ``max_length`` is an integer no larger than the position embeddings.

The safetensors header is parsed here rather than through ``safetensors.safe_open``: the check must read a bounded
number of bytes whatever the file claims (``safe_open`` maps the whole file), must not need a tensor framework, and
must say which of the file's promises fails.

Ground floor: imports only :mod:`privaudit.errors`.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from privaudit.errors import PrivauditError

MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit on a header
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
# Tensors that are a sequence classifier's output layer, by family (BERT, RoBERTa, GPT-2 / Llama style).
_HEAD_SUFFIXES = ("classifier.out_proj.weight", "classifier.weight", "score.weight")
# Families whose position ids start after the padding index, so two positions are never used for tokens.
_OFFSET_POSITIONS = {"roberta": 2, "xlm-roberta": 2, "camembert": 2}


def check_no_escaping_links(path: Path) -> None:
    """Refuse a file in the model directory that is a symbolic link to somewhere outside it.

    Raises:
        PrivauditError: names the link and where it points.
    """
    root = path.resolve()
    for entry in sorted(path.iterdir()):
        if entry.is_symlink():
            target = entry.resolve()
            if target != root and root not in target.parents:
                raise PrivauditError(
                    f"{entry}: a symbolic link out of the model directory (to {target}); copy the file into the "
                    "directory instead"
                )


def read_safetensors_header(file: Path) -> dict[str, dict]:
    """The tensors a safetensors file declares (name to ``{"dtype", "shape", "data_offsets"}``), checked.

    Raises:
        PrivauditError: not a regular file, too short, a header length past the file or past
            :data:`MAX_HEADER_BYTES`, a header that is not JSON, or tensors whose offsets do not cover the data exactly.
    """
    if not file.is_file():
        raise PrivauditError(f"{file}: not a regular file; model weights must be a safetensors file")
    size = file.stat().st_size
    bad = f"{file}: not a safetensors file"
    fix = "re-save the model with save_pretrained(..., safe_serialization=True)"
    if size < 8:
        raise PrivauditError(f"{bad} ({size} bytes, shorter than its 8-byte header length); {fix}")
    with file.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > MAX_HEADER_BYTES:
            raise PrivauditError(
                f"{bad} (its header claims {length:,} bytes, over the {MAX_HEADER_BYTES:,} limit); {fix}"
            )
        if length > size - 8:
            raise PrivauditError(
                f"{bad} (its header claims {length:,} bytes of a {size:,}-byte file: truncated?); {fix}"
            )
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("not a JSON object")
    except (UnicodeDecodeError, ValueError) as err:
        raise PrivauditError(f"{bad} (its header is not a JSON object: {str(err)[:60]}); {fix}") from None
    header.pop("__metadata__", None)
    data_bytes, end = size - 8 - length, 0
    for name, info in header.items():
        try:
            begin, stop = (int(x) for x in info["data_offsets"])
            count = math.prod(int(d) for d in info["shape"])
            width = _DTYPE_BYTES[info["dtype"]]
        except (KeyError, TypeError, ValueError):
            raise PrivauditError(f"{bad} (tensor '{name[:60]}' has no valid dtype, shape and offsets); {fix}") from None
        if not 0 <= begin <= stop <= data_bytes or stop - begin != count * width:
            raise PrivauditError(
                f"{bad} (tensor '{name[:60]}' lies at bytes {begin}-{stop} of {data_bytes:,} data bytes: "
                f"truncated or damaged); {fix}"
            )
        end = max(end, stop)
    if end != data_bytes:
        raise PrivauditError(
            f"{bad} (its tensors cover {end:,} of {data_bytes:,} data bytes: truncated or damaged); {fix}"
        )
    return header


def head_rows(tensors: dict[str, dict]) -> int | None:
    """Rows of the classification head's output weight (its number of classes), or ``None`` if none is recognised."""
    for suffix in _HEAD_SUFFIXES:
        for name, info in tensors.items():
            if name == suffix or name.endswith("." + suffix):
                return int(info["shape"][0])
    return None


def check_labels(config_file: Path, config: dict, tensors: dict[str, dict]) -> None:
    """``id2label`` present, keyed by ids ``0..C-1``, with as many labels as the head has rows.

    Raises:
        PrivauditError: names ``config.json`` and the field.
    """
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise PrivauditError(
            f"{config_file}: no id2label; a classifier's config must name its labels, e.g. "
            '"id2label": {"0": "negative", "1": "positive"}'
        )
    try:
        ids = sorted(int(k) for k in id2label)
    except (TypeError, ValueError):
        raise PrivauditError(f"{config_file}: id2label keys must be class ids 0, 1, ...") from None
    if ids != list(range(len(ids))):
        raise PrivauditError(f"{config_file}: id2label keys must be the class ids 0..{len(ids) - 1}, each once")
    rows = head_rows(tensors)
    if rows is not None and rows != len(ids):
        raise PrivauditError(
            f"{config_file}: id2label names {len(ids)} labels but the classification head has {rows} outputs; "
            "give one label per output"
        )


def check_max_length(recipe_file: Path, recipe: dict | None, config: dict) -> int:
    """The recipe's ``max_length``: an integer of at least 2 that fits the position embeddings.

    Without one in the recipe, 64 tokens, or the position embeddings if fewer: a longer text would not fit the model.

    Raises:
        PrivauditError: names ``privaudit.json`` and the field.
    """
    positions = config.get("max_position_embeddings", config.get("n_positions"))
    usable = None
    if isinstance(positions, int) and not isinstance(positions, bool):
        usable = positions - _OFFSET_POSITIONS.get(str(config.get("model_type")), 0)
    if recipe is None or "max_length" not in recipe:
        return 64 if usable is None else min(64, usable)
    value = recipe["max_length"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise PrivauditError(f"{recipe_file}: max_length is {value!r}; it must be a whole number of tokens, at least 2")
    if usable is not None and value > usable:
        raise PrivauditError(
            f"{recipe_file}: max_length {value} is past the model's {usable} position embeddings "
            f"(config.json); set it to {usable} or less"
        )
    return value


def check_weights(path: Path, config_file: Path, config: dict) -> None:
    """Every ``*.safetensors`` file's header, and the labels against the head they declare.

    Raises:
        PrivauditError: one line naming the file.
    """
    tensors: dict[str, dict] = {}
    for file in sorted(path.glob("*.safetensors")):
        tensors.update(read_safetensors_header(file))
    check_labels(config_file, config, tensors)
