"""``privaudit train`` as a job: read and check the data, plant canaries, train, and write everything or nothing."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
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

    device: str = "cpu"  # auto, cpu, cuda, cuda:N, mps (privaudit.device); the command line's default is auto
    precision: str = "fp32"


def _check_flags(job: TrainJob) -> None:
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
    """``TrainConfig``'s architecture keyword: none for a fine-tuned base, else the job's, else its default."""
    if job.base is not None:
        return {"architecture": None}
    return {} if job.architecture is None else {"architecture": job.architecture}


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
    rng = np.random.default_rng(job.seed)
    planted: list[canary_lib.Canary] = []
    if job.canary is not None:
        if job.canary_label != "random" and job.canary_label not in label2id:
            raise PrivauditError(
                f"--canary-label '{job.canary_label}' is not a label of {dataset.path}; "
                f"use 'random' or one of {', '.join(label_names)}"
            )
        controls = job.canary_count if job.canary_controls is None else job.canary_controls
        planted += canary_lib.draw_canaries(
            template=job.canary,
            label=label_names if job.canary_label == "random" else job.canary_label,
            count=job.canary_count,
            repeats=job.canary_repeats,
            controls=controls,
            rng=rng,
        )
    if job.audit_canaries:
        planted += canary_lib.draw_audit_canaries(
            template=job.audit_template,
            labels=label_names,
            count=job.audit_canaries,
            rng=rng,
            exclude={c.text for c in planted} | set(dataset.texts),
        )
    extra = canary_lib.planted_examples(planted)
    texts = list(dataset.texts) + [text for text, _ in extra]
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
    )
    canary_summary = None
    if planted:
        canary_summary = {
            "template": job.canary,
            "label": job.canary_label,
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
    if planted:
        summary["canaries"] = f"{len(planted)} records in {job.canaries_out}"
    if trained.gradient_canaries is not None:
        summary["gradient canaries"] = (
            f"{job.gradient_canaries} in {job.canaries_out}, their record in {record_path(job.canaries_out)}"
        )
    return summary
