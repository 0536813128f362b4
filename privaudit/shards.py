"""Sharded safetensors checkpoints: ``model.safetensors.index.json`` and the shards it names, each checked.

``save_pretrained`` splits a large model into ``model-00001-of-0000N.safetensors`` files and an index mapping each
tensor to its shard. Every shard is untrusted input like a single file: it must be a plain file inside the model
directory (no path, no symlink leading out of it) and start with a safetensors header.
"""

from __future__ import annotations

import json
from pathlib import Path

from privaudit.errors import PrivauditError
from privaudit.model_files import read_safetensors_header

INDEX = "model.safetensors.index.json"


def shard_files(path: Path) -> list[Path]:
    """The shards ``model.safetensors.index.json`` names, in order, each checked; ``[]`` without an index.

    Raises:
        PrivauditError: an unreadable index, a shard that is missing, outside the directory (a path or a symlink
            leading out), or not safetensors.
    """
    index = path / INDEX
    if not index.is_file():
        return []
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise PrivauditError(f"{index}: unreadable shard index (needs a 'weight_map' of tensor -> file)") from err
    root = path.resolve()
    shards = []
    for name in names:
        shard = path / str(name)
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise PrivauditError(f"{index}: shard '{name}' is not a file name in the model directory")
        if not shard.is_file():
            raise PrivauditError(f"{index}: shard '{name}' is missing from {path}")
        if shard.resolve().parent != root:
            raise PrivauditError(f"{shard}: a symlink leading out of the model directory; copy the shard in instead")
        read_safetensors_header(shard)  # the header checked as a single file's is
        shards.append(shard)
    if not shards:
        raise PrivauditError(f"{index}: the shard index names no shard")
    return shards
