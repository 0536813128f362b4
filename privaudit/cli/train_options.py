"""The flags of ``privaudit train``, declared once: ``train`` takes them all, ``sweep`` the recipe's share of them.

Each is an ``Annotated`` type, as :mod:`privaudit.cli.output` declares the gate's flags, so two commands spell and
document a flag alike; :func:`train_job` builds the :class:`~privaudit.training.job.TrainJob` from the parsed values
by field name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from privaudit.training.job import TrainJob

Base = Annotated[
    Path | None,
    typer.Option(help="Fine-tune this local Hugging Face model directory (safetensors).", rich_help_panel="Model"),
]
FromScratch = Annotated[
    bool,
    typer.Option(
        "--from-scratch",
        help="Train a small BERT and its WordPiece tokenizer on DATA (default).",
        rich_help_panel="Model",
    ),
]
TrainLayers = Annotated[
    str,
    typer.Option(
        help="What trains: all, head (classifier and pooler) or last:N (the last N transformer layers and the head); "
        "the rest is frozen.",
        rich_help_panel="Model",
    ),
]
LoraRank = Annotated[
    int,
    typer.Option(
        min=0,
        help="Train LoRA adapters of this rank (peft) and the head, not the base weights; 0: off.",
        rich_help_panel="Model",
    ),
]
LoraAlpha = Annotated[
    float | None,
    typer.Option(help="LoRA alpha; the update is scaled by alpha / rank (default 2 x rank).", rich_help_panel="Model"),
]
LoraTargets = Annotated[
    str,
    typer.Option(
        help="Comma-separated layers LoRA adapts; default: the model family's attention projections (BERT query,value; GPT-2 c_attn; Llama, Qwen2 q_proj,v_proj; DeBERTa-v2 query_proj,value_proj).",
        rich_help_panel="Model",
    ),
]
Arch = Annotated[
    str,
    typer.Option(
        help="Model to train from scratch: bert (a small BERT, or --base), bilstm (BiLSTM, max-pooled) or cnn "
        "(Kim 2014), the last two over word embeddings.",
        rich_help_panel="Model",
    ),
]
EmbeddingDim = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="bilstm/cnn: word embedding width (default: the --word-vectors' dimension, else 100).",
        rich_help_panel="Model",
    ),
]
HiddenSize = Annotated[int, typer.Option(min=1, help="bilstm: LSTM units per direction.", rich_help_panel="Model")]
NumFilters = Annotated[
    int, typer.Option(min=1, help="cnn: filters of each width (3, 4 and 5 tokens).", rich_help_panel="Model")
]
CharEmbeddings = Annotated[
    bool,
    typer.Option(
        "--char-embeddings",
        help="bilstm/cnn: append a character CNN's features to each word (Ma & Hovy 2016).",
        rich_help_panel="Model",
    ),
]
WordVectors = Annotated[
    Path | None,
    typer.Option(
        help="bilstm/cnn: frozen pretrained word vectors from a local GloVe or word2vec text file.",
        rich_help_panel="Model",
    ),
]
Dropout = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        max=0.99,
        help="Dropout of a model trained from scratch (default: BERT 0.1, bilstm/cnn 0).",
        rich_help_panel="Training",
    ),
]
EarlyStopping = Annotated[
    int,
    typer.Option(
        min=0,
        help="Stop after this many epochs without a lower validation loss, keeping the best epoch; 0: off.",
        rich_help_panel="Training",
    ),
]
Validation = Annotated[
    Path | None,
    typer.Option(help="Validation data for --early-stopping (JSONL or CSV, as DATA).", rich_help_panel="Training"),
]
ValidationFraction = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=0.9,
        help="For --early-stopping: hold out this fraction of DATA (before canaries) as validation data.",
        rich_help_panel="Training",
    ),
]
Epochs = Annotated[int, typer.Option(min=1, help="Passes over the data.", rich_help_panel="Training")]
BatchSize = Annotated[
    int, typer.Option(min=1, help="Batch size (expected batch size with --dp).", rich_help_panel="Training")
]
Lr = Annotated[float, typer.Option(min=0.0, help="Learning rate (AdamW).", rich_help_panel="Training")]
MaxLength = Annotated[int, typer.Option(min=8, help="Maximum tokens per text.", rich_help_panel="Training")]
Seed = Annotated[int, typer.Option(help="Random seed: same seed, same model.", rich_help_panel="Training")]
MaxGradNorm = Annotated[float, typer.Option(help="DP-SGD per-example clipping norm.", rich_help_panel="DP-SGD")]
Delta = Annotated[
    float | None, typer.Option(help="DP delta; default 1e-5, must be below 1/N.", rich_help_panel="DP-SGD")
]
Accountant = Annotated[str, typer.Option(help="rdp, prv or gdp.", rich_help_panel="DP-SGD")]
Canary = Annotated[
    str | None,
    typer.Option(help="Canary template with slots, e.g. 'my pin code is {d} {d} {d} {d}'.", rich_help_panel="Canaries"),
]
CanaryLabel = Annotated[
    str | None,
    typer.Option(
        help="Label the canaries are trained with; 'random': a random label each; 'new': a label of its own each "
        "(canary-1, canary-2...), added to the model's labels.",
        rich_help_panel="Canaries",
    ),
]
CanaryCount = Annotated[int, typer.Option(min=0, help="Distinct secrets to plant.", rich_help_panel="Canaries")]
CanaryRepeats = Annotated[int, typer.Option(min=1, help="Copies of each planted secret.", rich_help_panel="Canaries")]
CanaryControls = Annotated[
    int | None,
    typer.Option(
        min=0, help="Never-inserted control secrets (default: as many as planted).", rich_help_panel="Canaries"
    ),
]
AuditCanaries = Annotated[
    int,
    typer.Option(min=0, help="One-run audit canaries, each inserted with probability 1/2.", rich_help_panel="Canaries"),
]
AuditTemplate = Annotated[
    str,
    typer.Option(
        help="Template of the one-run audit canaries (random secret, random label).", rich_help_panel="Canaries"
    ),
]
AUDIT_TEMPLATE = "my secret number is {d} {d} {d} {d} {d} {d}"


def train_job(params: Mapping[str, Any], **overrides: Any) -> TrainJob:
    """The training job of the parsed flags ``params`` (``ctx.params``), with ``overrides`` on top.

    Flags that are not a job's field are left out; ``lora_targets`` is split on commas.
    """
    from privaudit.training.job import TrainJob

    values = {**params, **overrides}
    if isinstance(values.get("lora_targets"), str):
        values["lora_targets"] = tuple(t.strip() for t in values["lora_targets"].split(",") if t.strip())
    return TrainJob(**{f.name: values[f.name] for f in fields(TrainJob) if f.name in values})
