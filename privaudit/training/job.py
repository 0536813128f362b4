"""``privaudit train`` as a job: read and check the data, plant canaries, train, and write everything or nothing."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from privaudit.canary import canaries as canary_lib
from privaudit.data import TextDataset, encode_labels, fingerprint, read_dataset
from privaudit.device import Compute, describe
from privaudit.errors import PrivauditError
from privaudit.ranges import check_epsilon
from privaudit.training.gradient_canaries import record_path
from privaudit.training.layers import DEFAULT_LORA_TARGETS, parse_train_layers
from privaudit.training.model import Architecture
from privaudit.training.save import publish_model, recipe_dict, stage_model
from privaudit.training.train import DPConfig, StepCallback, TrainConfig, train_classifier
from privaudit.training.word_models import WordModel, check_arch

NEW_LABEL = "new"  # --canary-label new: a label of its own for each planted secret


@dataclass(frozen=True)
class TrainJob:
    """Every flag of ``privaudit train``, and the architecture of a model trained from scratch.

    ``data`` is a file, or examples already read (:func:`privaudit.data.dataset_from_records`, for the Python API).
    ``architecture`` is the small BERT trained from scratch; ``None``, the default :class:`Architecture`. It has no
    flag: reference models read it back from the recipe.
    """

    data: Path | TextDataset
    out: Path
    base: Path | None = None
    from_scratch: bool = False
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    max_length: int = 64
    seed: int = 0
    dp: bool = False
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    max_grad_norm: float = 1.0
    delta: float | None = None
    accountant: str = "rdp"
    train_layers: str = "all"
    lora_rank: int = 0
    lora_alpha: float | None = None
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    canary: str | None = None
    canary_label: str | None = None
    canary_count: int = 10
    canary_repeats: int = 10
    canary_controls: int | None = None
    audit_canaries: int = 0
    audit_template: str = "my secret number is {d} {d} {d} {d} {d} {d}"
    gradient_canaries: int = 0
    canaries_out: Path | None = None
    overwrite: bool = False
    architecture: Architecture | None = None
    # --arch: "bert" (a small BERT from scratch, or --base) or privaudit's own "bilstm" / "cnn" (privaudit.models).
    arch: str = "bert"
    embedding_dim: int | None = None
    hidden_size: int = 100
    num_filters: int = 100
    char_embeddings: bool = False
    word_vectors: Path | None = None
    dropout: float | None = None
    word_model: WordModel | None = None  # API and tests only: every size at once; the flags above fill it otherwise
    early_stopping: int = 0
    validation: Path | None = None
    validation_fraction: float = 0.0

    device: str = "cpu"  # auto, cpu, cuda, cuda:N, mps (privaudit.device); the command line's default is auto
    precision: str = "fp32"


def _check_model_flags(job: TrainJob) -> None:
    check_arch(job.arch)
    word_flags = job.embedding_dim is not None or job.char_embeddings or job.word_vectors is not None
    if job.arch == "bert" and (word_flags or job.word_model is not None):
        raise PrivauditError(
            "--embedding-dim, --char-embeddings and --word-vectors apply to --arch bilstm or cnn, not bert"
        )
    if job.arch != "bert":
        if job.architecture is not None:
            raise PrivauditError(f"architecture= sizes the small BERT; --arch {job.arch} takes word-model sizes")
        if job.base is not None:
            raise PrivauditError(
                f"--arch {job.arch} trains from scratch; --base fine-tunes a transformer (--arch bert)"
            )
        if job.lora_rank or job.train_layers != "all":
            raise PrivauditError(
                f"--arch {job.arch} trains all its parameters; leave out --lora-rank and --train-layers"
            )
    if job.dropout is not None and job.base is not None:
        raise PrivauditError("--dropout applies to models trained from scratch; a --base model keeps its own")
    if job.validation is not None and job.validation_fraction:
        raise PrivauditError("give --validation FILE or --validation-fraction F, not both")
    if job.early_stopping and job.validation is None and not job.validation_fraction:
        raise PrivauditError(
            "--early-stopping needs validation data: pass --validation FILE or --validation-fraction F"
        )
    if not job.early_stopping and (job.validation is not None or job.validation_fraction):
        raise PrivauditError("--validation and --validation-fraction are for --early-stopping PATIENCE; add it")
    if job.canary_label == NEW_LABEL and job.canary_count < 1:
        raise PrivauditError("--canary-label new gives each planted secret a label: it needs --canary-count 1 or more")


def _check_flags(job: TrainJob) -> None:
    _check_model_flags(job)
    spec = parse_train_layers(job.train_layers)
    if job.lora_rank < 0:
        raise PrivauditError(f"--lora-rank must be at least 1 (0: no LoRA), not {job.lora_rank}")
    if job.lora_rank and spec.kind != "all":
        raise PrivauditError("give --train-layers or --lora-rank, not both: LoRA trains its adapters and the head")
    if job.base is not None and job.from_scratch:
        raise PrivauditError("give either --base DIR (fine-tune) or --from-scratch, not both")
    if not job.dp and (job.noise_multiplier is not None or job.target_epsilon is not None):
        raise PrivauditError("--noise-multiplier and --target-epsilon need --dp")
    if job.dp and job.noise_multiplier is not None and job.target_epsilon is not None:
        raise PrivauditError("give --noise-multiplier or --target-epsilon, not both")
    if check_epsilon(job.target_epsilon, where="--target-epsilon") == 0:
        raise PrivauditError("--target-epsilon must be above 0; try 8")
    if job.out.exists() and not job.overwrite:
        raise PrivauditError(f"{job.out}: already exists; choose another --out or pass --overwrite")
    if job.gradient_canaries < 0:
        raise PrivauditError("--gradient-canaries must be 0 or more")
    if job.gradient_canaries and not job.dp:
        raise PrivauditError(
            "--gradient-canaries needs --dp: they audit the DP-SGD noise, which training without DP lacks"
        )
    wants_canaries = job.canary is not None or job.audit_canaries > 0 or job.gradient_canaries > 0
    if wants_canaries and job.canaries_out is None:
        raise PrivauditError("canaries need --canaries-out FILE: the secrets are audit ground truth, kept apart")
    if job.canaries_out is not None:
        if not wants_canaries:
            raise PrivauditError("--canaries-out needs --canary TEMPLATE, --audit-canaries M or --gradient-canaries M")
        out_dir, canaries_file = job.out.resolve(), job.canaries_out.resolve()
        if canaries_file == out_dir or out_dir in canaries_file.parents:
            raise PrivauditError(
                f"{job.canaries_out}: canary secrets must not be written inside the model directory {job.out}"
            )
        if job.canaries_out.is_dir():
            raise PrivauditError(f"{job.canaries_out}: is a directory; --canaries-out names the file to write")
    if job.canary is not None and job.canary_count < 1:
        raise PrivauditError(
            f"--canary-count {job.canary_count}: with --canary give at least 1 secret to plant; a canary file "
            "without one is refused by 'privaudit canary'"
        )
    if job.canary is None and job.canary_label is not None:
        raise PrivauditError("--canary-label needs --canary TEMPLATE")
    if job.canary is not None and job.canary_label is None:
        raise PrivauditError(
            "--canary needs --canary-label LABEL (or 'random'): the label the canaries are trained with"
        )


def _architecture(job: TrainJob) -> dict:
    """``TrainConfig``'s model keywords: none for a fine-tuned base, the word model's sizes for ``--arch bilstm/cnn``,
    else the small BERT's (the job's, or its default), with ``--dropout`` applied."""
    if job.base is not None:
        return {"architecture": None}
    if job.arch != "bert":
        word_model = job.word_model or WordModel(
            embedding_dim=job.embedding_dim,
            hidden_size=job.hidden_size,
            num_filters=job.num_filters,
            char_embeddings=job.char_embeddings,
            word_vectors=str(job.word_vectors.resolve()) if job.word_vectors is not None else None,
        )
        if job.dropout is not None:
            word_model = replace(word_model, dropout=job.dropout)
        return {"architecture": None, "arch": job.arch, "word_model": word_model}
    if job.dropout is not None:
        return {"architecture": replace(job.architecture or Architecture(), dropout=job.dropout)}
    return {} if job.architecture is None else {"architecture": job.architecture}


def _new_labels(job: TrainJob, label2id: dict[str, int]) -> list[str]:
    """``--canary-label new``: one label of its own for each planted secret, named ``canary-1``, ``canary-2``..."""
    if job.canary is None or job.canary_label != NEW_LABEL:
        return []
    names = [f"canary-{i + 1}" for i in range(job.canary_count)]
    clash = [name for name in names if name in label2id]
    if clash:
        raise PrivauditError(f"--canary-label new: the data already has a label '{clash[0]}'; rename it")
    return names


def _validation(job: TrainJob, dataset: TextDataset, labels: np.ndarray, label_names: list[str]):
    """The training examples left and the validation data of ``--validation`` or ``--validation-fraction``.

    The fraction is held out before any canary is planted, so no canary copy lands in the validation data.
    """
    if not job.early_stopping:
        return list(dataset.texts), labels, None
    from privaudit.training.early_stopping import read_validation, split_validation

    if job.validation is not None:
        return list(dataset.texts), labels, read_validation(job.validation, label_names)
    train, held = split_validation(len(dataset), job.validation_fraction, job.seed)
    texts = list(dataset.texts)
    return [texts[i] for i in train], labels[train], ([texts[i] for i in held], labels[held])


@contextlib.contextmanager
def _keep_previous(paths: list[Path]) -> Iterator[None]:
    """Move the files at ``paths`` aside (``NAME.previous``) while the block writes new ones; if the block fails, put
    them back (and remove what it wrote), so an earlier model's canary outputs stay whole; else drop them."""
    kept = []
    for path in paths:
        with contextlib.suppress(OSError):  # the folder may be missing or a file: nothing to keep then
            if path.is_file():
                path.replace(path.with_name(path.name + ".previous"))
                kept.append(path)
    try:
        yield
    except BaseException:
        for path in paths:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
                if path in kept:
                    path.with_name(path.name + ".previous").replace(path)
        raise
    for path in kept:
        with contextlib.suppress(OSError):
            path.with_name(path.name + ".previous").unlink()


def run_train(job: TrainJob, *, on_step: StepCallback | None = None) -> dict:
    """Run the job; return a summary for the terminal.

    Raises:
        PrivauditError: bad flags or data; nothing is written then.
    """
    _check_flags(job)
    compute = Compute.from_flags(job.device, job.precision, dp=job.dp)
    dataset = read_dataset(job.data, min_examples=2)
    # Any id at all is refused: encode_labels would read it as an index into the sorted names, not as a name.
    if any(isinstance(x, int) for x in dataset.labels):
        raise PrivauditError(
            f"{dataset.path}: training data needs label names, not ids, so the model can name its labels"
        )
    label_names = sorted(dataset.label_names())
    label2id = {name: i for i, name in enumerate(label_names)}
    labels = encode_labels(dataset, label2id)
    new_labels = _new_labels(job, label2id)
    data_labels = list(label_names)
    label_names += new_labels  # after the data's, so their ids are those of the data without canaries
    label2id.update({name: len(data_labels) + i for i, name in enumerate(new_labels)})
    train_texts, labels, validation = _validation(job, dataset, labels, label_names)
    rng = np.random.default_rng(job.seed)
    planted: list[canary_lib.Canary] = []
    if job.canary is not None:
        if job.canary_label not in ("random", NEW_LABEL) and job.canary_label not in label2id:
            raise PrivauditError(
                f"--canary-label '{job.canary_label}' is not a label of {dataset.path}; "
                f"use 'random', 'new' or one of {', '.join(label_names)}"
            )
        controls = job.canary_count if job.canary_controls is None else job.canary_controls
        drawn = canary_lib.draw_canaries(
            template=job.canary,
            label=data_labels if job.canary_label in ("random", NEW_LABEL) else job.canary_label,
            count=job.canary_count,
            repeats=job.canary_repeats,
            controls=controls,
            rng=rng,
        )
        if new_labels:
            # Planted secret i gets label canary-i; control j is scored against canary-(j mod count), a label the
            # model learned from another secret: the null that the planted secrets' exposure is compared with.
            drawn = [replace(c, label=new_labels[i % len(new_labels)]) for i, c in enumerate(drawn)]
        planted += drawn
    if job.audit_canaries:
        planted += canary_lib.draw_audit_canaries(
            template=job.audit_template,
            labels=data_labels,
            count=job.audit_canaries,
            rng=rng,
            exclude={c.text for c in planted} | set(dataset.texts),
        )
    extra = canary_lib.planted_examples(planted)
    texts = train_texts + [text for text, _ in extra]
    all_labels = np.concatenate([labels, np.array([label2id[label] for _, label in extra], dtype=np.int64)])
    n = len(texts)
    dp = None
    if job.dp:
        delta = job.delta if job.delta is not None else 1e-5
        if not 0 < delta < 1 / n:  # NaN included
            raise PrivauditError(
                f"--delta {delta:g} is not below 1/N = {1 / n:.2g}, or not above 0: give 0 < delta < 1/N (at 1/N or "
                "more it would allow leaking an example)"
            )
        dp = DPConfig(
            delta=delta,
            max_grad_norm=job.max_grad_norm,
            noise_multiplier=job.noise_multiplier,
            target_epsilon=job.target_epsilon,
            accountant=job.accountant,
        )
    config = TrainConfig(
        epochs=job.epochs,
        batch_size=min(job.batch_size, n),
        lr=job.lr,
        max_length=job.max_length,
        seed=job.seed,
        base=str(job.base) if job.base is not None else None,
        train_layers=job.train_layers,
        lora_rank=job.lora_rank,
        lora_alpha=job.lora_alpha,
        lora_targets=tuple(job.lora_targets),
        early_stopping=job.early_stopping,
        validation_fraction=job.validation_fraction,
        validation_file=str(job.validation.resolve()) if job.validation is not None else None,
        **_architecture(job),
    )
    trained = train_classifier(
        texts=texts,
        labels=all_labels,
        label_names=label_names,
        config=config,
        dp=dp,
        on_step=on_step,
        compute=compute,
        gradient_canaries=job.gradient_canaries,
        validation=validation,
    )
    canary_summary = None
    if planted:
        canary_summary = {
            "template": job.canary,
            "label": job.canary_label,
            **({"new_labels": new_labels} if new_labels else {}),  # --canary-label new only
            "count": job.canary_count if job.canary else 0,
            "repeats": job.canary_repeats if job.canary else 0,
            "audit_canaries": job.audit_canaries,
            "planted_examples": len(extra),
        }
    recipe = recipe_dict(
        trained,
        data={
            "path": str(dataset.path),
            "fingerprint": fingerprint(dataset.texts, dataset.labels),
            "n_examples": len(dataset),
            "n_with_canaries": n,
        },
        canaries=canary_summary,
    )
    # Everything or nothing, and nothing lost: the new model is written beside --out, its canary files next, and only
    # then does it take the old model's place (--overwrite). A failure before that leaves the old model as it was.
    staged = stage_model(trained, job.out, recipe, overwrite=job.overwrite)
    outputs = [] if job.canaries_out is None else [job.canaries_out]
    if trained.gradient_canaries is not None:
        outputs.append(record_path(job.canaries_out))
    try:
        with _keep_previous(outputs):
            if job.canaries_out is not None:
                gradient_lines = trained.gradient_canaries.save(job.canaries_out) if trained.gradient_canaries else []
                canary_lib.write_canaries(job.canaries_out, planted, extra_lines=gradient_lines)
            publish_model(staged, job.out)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
    summary = {
        "architecture": job.arch if job.base is None else f"{job.base}",
        "examples": n,
        "labels": len(label_names),
        "train accuracy": f"{trained.train_accuracy:.3f}",
        "seconds": f"{trained.seconds:.1f}",
        "device": f"{describe(compute.device)}, {compute.precision}",
    }
    if job.lora_rank or job.train_layers != "all":
        what = f"LoRA rank {job.lora_rank} + head" if job.lora_rank else job.train_layers
        summary["trained parameters"] = f"{trained.n_parameters:,} ({what})"
    if trained.dp:
        summary["noise multiplier"] = f"{trained.dp['noise_multiplier']:.4f}"
        summary["epsilon"] = (
            f"{trained.dp['epsilon']:.3f} (delta = {trained.dp['delta']:g}, {trained.dp['accountant']})"
        )
    if trained.early_stopping:
        stop = trained.early_stopping
        summary["early stopping"] = f"kept epoch {stop['best_epoch']}, stopped after {stop['stopped_epoch']}"
    for i, note in enumerate(trained.notes):
        summary[f"note {i + 1}" if len(trained.notes) > 1 else "note"] = note
    if planted:
        summary["canaries"] = f"{len(planted)} records in {job.canaries_out}"
    if trained.gradient_canaries is not None:
        summary["gradient canaries"] = (
            f"{job.gradient_canaries} in {job.canaries_out}, their record in {record_path(job.canaries_out)}"
        )
    return summary
