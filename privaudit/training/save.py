"""Saving a trained model: safetensors weights, its tokenizer and ``privaudit.json``, written atomically."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from privaudit import __version__
from privaudit.errors import PrivauditError
from privaudit.target import RECIPE_FILE, check_model_dir
from privaudit.training.train import TrainedModel


def recipe_dict(trained: TrainedModel, *, data: dict, canaries: dict | None) -> dict:
    """The ``privaudit.json`` content: recipe, data fingerprint, DP parameters."""
    config = asdict(trained.config)
    return {
        "privaudit_version": __version__,
        "recipe": config,
        "max_length": trained.config.max_length,
        "labels": trained.label_names,
        "data": data,
        "dp": trained.dp,
        "canaries": canaries,
        "train_accuracy": round(trained.train_accuracy, 6),
        "early_stopping": trained.early_stopping,
        "trainable": {"parameters": trained.n_parameters, "tensors": trained.trainable},
        "train_seconds": round(trained.seconds, 3),
        "compute": trained.compute.to_dict(),
    }


def write_model(trained: TrainedModel, directory: Path, recipe: dict) -> None:
    """Write model, tokenizer and ``privaudit.json`` into an existing (temporary) ``directory``, and check them."""
    trained.model.save_pretrained(directory, safe_serialization=True)
    trained.tokenizer.save_pretrained(directory)
    (directory / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    check_model_dir(directory)
    directory.chmod(0o755)  # mkdtemp makes it private; a model directory is an ordinary one
    for file in directory.iterdir():
        if file.is_file():
            file.chmod(0o644)


def save_model(trained: TrainedModel, out_dir: Path, recipe: dict, *, overwrite: bool = False) -> None:
    """Write model, tokenizer and ``privaudit.json`` to ``out_dir`` atomically: all or nothing."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise PrivauditError(f"{out_dir}: already exists; choose another --out or pass --overwrite")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write_model(trained, tmp, recipe)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
