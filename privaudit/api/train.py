"""``privaudit.train`` and ``privaudit.epsilon``: ``privaudit train`` and ``privaudit epsilon`` from Python, through the
same job and accountant as the command line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from privaudit.api.inputs import Data, PathLike, Progress, as_data, as_path, check_ranges, stage_callback
from privaudit.errors import PrivauditError

if TYPE_CHECKING:
    from privaudit.training.model import Architecture


def train(
    data: Data,
    *,
    out: PathLike,
    base: PathLike | None = None,
    from_scratch: bool = False,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    max_length: int = 64,
    seed: int = 0,
    dp: bool = False,
    noise_multiplier: float | None = None,
    target_epsilon: float | None = None,
    max_grad_norm: float = 1.0,
    delta: float | None = None,
    accountant: str = "rdp",
    canary: str | None = None,
    canary_label: str | None = None,
    canary_count: int = 10,
    canary_repeats: int = 10,
    canary_controls: int | None = None,
    audit_canaries: int = 0,
    audit_template: str = "my secret number is {d} {d} {d} {d} {d} {d}",
    canaries_out: PathLike | None = None,
    overwrite: bool = False,
    train_layers: str = "all",
    lora_rank: int = 0,
    lora_alpha: float | None = None,
    lora_targets: str | Sequence[str] = "",
    gradient_canaries: int = 0,
    device: str = "auto",
    precision: str = "fp32",
    architecture: Architecture | Mapping[str, Any] | None = None,
    arch: str = "bert",
    embedding_dim: int | None = None,
    hidden_size: int = 100,
    num_filters: int = 100,
    char_embeddings: bool = False,
    word_vectors: PathLike | None = None,
    dropout: float | None = None,
    early_stopping: int = 0,
    validation: PathLike | None = None,
    validation_fraction: float = 0.0,
    progress: Progress | None = None,
) -> dict[str, str | int]:
    """Train a text classifier, optionally with DP-SGD and planted canaries: ``privaudit train`` from Python.

    Writes the model (safetensors), its tokenizer and ``privaudit.json`` (the recipe, a fingerprint of the data and
    the DP parameters) to ``out``, and the canary secrets to ``canaries_out``: everything or nothing.

    Args:
        data: the training examples: a JSONL or CSV file, a list of ``{"text", "label"}`` dicts, or a pandas
            ``DataFrame`` with those columns. Labels by name (the model's label names).
        out: the directory to write the model into.
        base: fine-tune this local Hugging Face model directory (safetensors) instead of training from scratch.
        from_scratch: train a small BERT and its WordPiece tokenizer on ``data`` (the default without ``base``).
        epochs: passes over the data.
        batch_size: batch size (expected batch size with ``dp``).
        lr: learning rate (AdamW).
        max_length: maximum tokens per text (at least 8).
        seed: random seed: same seed, same model.
        dp: train with DP-SGD (Opacus accounting, Poisson sampling).
        noise_multiplier: DP-SGD noise over clipping norm; or give ``target_epsilon``.
        target_epsilon: pick the noise multiplier that reaches this epsilon.
        max_grad_norm: DP-SGD per-example clipping norm.
        delta: DP delta; ``None``: 1e-5, which must be below 1/N.
        accountant: ``"rdp"``, ``"prv"`` or ``"gdp"``.
        canary: a canary template with slots, e.g. ``"my pin code is {d} {d} {d} {d}"``.
        canary_label: the label the canaries are trained with, or ``"random"``: a random label each.
        canary_count: distinct secrets to plant.
        canary_repeats: copies of each planted secret.
        canary_controls: never-inserted control secrets; ``None``: as many as planted.
        audit_canaries: one-run audit canaries, each inserted with probability 1/2.
        audit_template: the template of the one-run audit canaries.
        canaries_out: where to write the canary secrets (never inside ``out``); needed with canaries.
        overwrite: replace ``out`` if it exists.
        architecture: API only: the small BERT trained from scratch, as a
            :class:`~privaudit.training.model.Architecture` or a dict of its fields (``hidden_size``,
            ``num_hidden_layers``, ``num_attention_heads``, ``intermediate_size``, ``vocab_size``, ``dropout``);
            ``None``: ``Architecture()``, the command's (2 layers of width 128, a 4000-token vocabulary).
        train_layers: ``all``, ``head`` or ``last:N``: train only those layers, freezing the rest (``--train-layers``).
        lora_rank: rank of LoRA adapters (``peft``) on ``lora_targets``, with ``lora_alpha`` (default 2R); 0: none.
        lora_targets: the modules LoRA adapts, a list or a comma string (``--lora-targets``).
        gradient_canaries: with ``dp``, this many white-box gradient canaries (audit with ``privaudit dp-audit``).
        device: ``auto`` (CUDA, then MPS, then the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (``--device``).
        precision: ``fp32``, ``bf16`` or ``fp16`` autocast for non-DP training (``--precision``); DP-SGD keeps fp32.
        arch: ``"bert"``, ``"bilstm"`` or ``"cnn"`` (``--arch``): the last two are privaudit's word-embedding
            classifiers, sized by ``embedding_dim``, ``hidden_size`` (BiLSTM), ``num_filters`` (CNN), with
            ``char_embeddings`` (a character CNN per word) and ``word_vectors`` (a GloVe/word2vec text file, frozen).
        dropout: dropout of a model trained from scratch; ``None``: BERT 0.1, BiLSTM/CNN 0.
        early_stopping: stop after this many epochs without a lower validation loss, keeping the best epoch; 0: off.
        validation: the validation data file for ``early_stopping``; or hold out ``validation_fraction`` of ``data``.
        progress: called as ``progress("training", step, total_steps)`` after each optimiser step.

    Returns:
        The summary ``privaudit train`` prints: ``examples``, ``labels``, ``train accuracy``, ``seconds``, and with
        ``dp`` the ``noise multiplier`` and ``epsilon``, with canaries where they were written.

    Raises:
        PrivauditError: bad arguments or data, with the message the command line prints; nothing is written then.

    Example:
        >>> import privaudit
        >>> summary = privaudit.train(
        ...     "fixtures/data/members.jsonl", out="model", epochs=3, dp=True, target_epsilon=8
        ... )  # doctest: +SKIP
    """
    from privaudit.training.job import TrainJob, run_train

    check_ranges(
        epochs=(epochs, 1),
        batch_size=(batch_size, 1),
        lr=(lr, 0.0),
        max_length=(max_length, 8),
        canary_count=(canary_count, 0),
        canary_repeats=(canary_repeats, 1),
        canary_controls=(canary_controls, 0),
        audit_canaries=(audit_canaries, 0),
        embedding_dim=(embedding_dim, 1),
        hidden_size=(hidden_size, 1),
        num_filters=(num_filters, 1),
        early_stopping=(early_stopping, 0),
    )
    callback = stage_callback(progress)
    job = TrainJob(
        data=as_data(data, name="data"),
        out=as_path(out, name="out", required=True),
        base=as_path(base, name="base"),
        from_scratch=from_scratch,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        max_length=max_length,
        seed=seed,
        dp=dp,
        noise_multiplier=noise_multiplier,
        target_epsilon=target_epsilon,
        max_grad_norm=max_grad_norm,
        delta=delta,
        accountant=accountant,
        canary=canary,
        canary_label=canary_label,
        canary_count=canary_count,
        canary_repeats=canary_repeats,
        canary_controls=canary_controls,
        audit_canaries=audit_canaries,
        audit_template=audit_template,
        canaries_out=as_path(canaries_out, name="canaries_out"),
        overwrite=overwrite,
        train_layers=train_layers,
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_targets=tuple(t.strip() for t in lora_targets.split(",") if t.strip())
        if isinstance(lora_targets, str)
        else tuple(lora_targets),
        gradient_canaries=gradient_canaries,
        device=device,
        precision=precision,
        architecture=_architecture(architecture),
        arch=arch,
        embedding_dim=embedding_dim,
        hidden_size=hidden_size,
        num_filters=num_filters,
        char_embeddings=char_embeddings,
        word_vectors=as_path(word_vectors, name="word_vectors"),
        dropout=dropout,
        early_stopping=early_stopping,
        validation=as_path(validation, name="validation"),
        validation_fraction=validation_fraction,
    )

    def on_step(done: int, total: int) -> None:
        if callback is not None:
            callback("training", done, total)

    return run_train(job, on_step=on_step)


def _architecture(value: Architecture | Mapping[str, Any] | None) -> Architecture | None:
    from privaudit.training.model import Architecture

    if value is None or isinstance(value, Architecture):
        return value
    if not isinstance(value, Mapping):
        raise PrivauditError(
            f"architecture: expected an Architecture or a dict of its fields, not {type(value).__name__}"
        )
    try:
        return Architecture(**value)
    except TypeError as err:
        raise PrivauditError(
            f"architecture: {err}; its fields are those of privaudit.training.model.Architecture"
        ) from err


def epsilon(
    *,
    noise_multiplier: float | None = None,
    sample_rate: float | None = None,
    steps: int | None = None,
    delta: float | None = None,
    accountant: str = "rdp",
    model_dir: PathLike | None = None,
) -> float:
    """The theoretical epsilon of a DP-SGD run, through Opacus's accountants: ``privaudit epsilon`` from Python.

    Either from the run's parameters (all four), or from ``model_dir``, a model trained with ``dp=True``, whose
    ``privaudit.json`` records them (and its delta).

    Args:
        noise_multiplier: noise standard deviation over the clipping norm.
        sample_rate: Poisson sampling rate: batch size over data set size.
        steps: optimiser steps.
        delta: the target delta.
        accountant: ``"rdp"`` (Mironov 2017), ``"prv"`` (Gopi et al. 2021) or ``"gdp"`` (Dong et al. 2019).
        model_dir: read the parameters from this model directory instead.

    Returns:
        Epsilon at ``delta``.

    Raises:
        PrivauditError: a missing or bad parameter, or a model trained without DP, with the command's message.

    Example:
        >>> import privaudit
        >>> round(privaudit.epsilon(noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=1e-5), 3)
        7.329
    """
    from privaudit.stats.accounting import theoretical_epsilon

    value, _ = theoretical_epsilon(
        as_path(model_dir, name="model_dir"),
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
        delta=delta,
        accountant=accountant,
    )
    return value
