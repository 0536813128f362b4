"""Fine-tune or train from scratch a text classifier, optionally with DP-SGD (Opacus), and save it with its recipe.

The recipe written to ``privaudit.json`` holds everything needed to train reference models the same way
(``privaudit mia`` does), the training data's fingerprint, and the DP parameters with the accountant's epsilon.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from privaudit.device import CPU, Compute, check_precision
from privaudit.errors import PrivauditError
from privaudit.families.adapter import adapter_for
from privaudit.families.forward import one_row_per_example
from privaudit.stats.accounting import epsilon, noise_multiplier_for_epsilon
from privaudit.training.config import Architecture, TrainConfig  # noqa: F401 (re-exported: their old home)
from privaudit.training.dp_sgd import DPConfig
from privaudit.training.dp_sgd import empty_batch_step as _empty_batch_step  # tests spy on it here
from privaudit.training.ghost import ghost_refuses_ties
from privaudit.training.layers import (
    apply_lora,
    freeze_for,
    merge_lora,
    parse_train_layers,
    trainable_names,
)
from privaudit.training.model import build_model

if TYPE_CHECKING:
    from privaudit.training.canary_insertion import GradientCanaries


@dataclass
class TrainedModel:
    """The result of :func:`train_classifier`."""

    model: torch.nn.Module
    tokenizer: object
    label_names: list[str]
    config: TrainConfig
    dp: dict | None
    seconds: float
    train_accuracy: float
    compute: Compute = CPU

    trainable: list[str] = field(default_factory=list)  # the parameters that trained (LoRA: adapter names)
    notes: list[str] = field(default_factory=list)  # lines for the user: a replaced head, a chosen pad token
    n_parameters: int = 0
    gradient_canaries: GradientCanaries | None = None
    early_stopping: dict | None = None


StepCallback = Callable[[int, int], None]


def _tensors(tokenizer, texts: Sequence[str], labels: np.ndarray, max_length: int):
    enc = tokenizer(list(texts), padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    return torch.utils.data.TensorDataset(
        enc["input_ids"], enc["attention_mask"], torch.as_tensor(labels, dtype=torch.long)
    )


def _forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    # The model's own forward on ids and mask, as privaudit scores it: each family numbers its own positions
    # (RoBERTa from padding_idx + 1), and passing explicit ones trained another function than the one audited.
    # Each batch is trimmed to its longest example, which right padding (every family's) makes exact.
    width = max(int(attention_mask.sum(dim=1).max()), 1)
    input_ids = input_ids[:, :width].contiguous()
    attention_mask = attention_mask[:, :width].contiguous()
    # Batch-wide lookups (positions) widened to one row per example, with the same values, for DP-SGD's engines.
    with one_row_per_example(model):
        return model(input_ids=input_ids, attention_mask=attention_mask).logits


def train_classifier(
    *,
    texts: Sequence[str],
    labels: np.ndarray,
    label_names: list[str],
    config: TrainConfig,
    dp: DPConfig | None = None,
    tokenizer=None,
    on_step: StepCallback | None = None,
    compute: Compute = CPU,
    gradient_canaries: int = 0,
    validation: tuple[Sequence[str], np.ndarray] | None = None,
) -> TrainedModel:
    """Train a sequence classifier.

    Args:
        texts: training utterances (canaries already planted).
        labels: label ids into ``label_names``.
        label_names: the model's labels, in id order.
        config: the training recipe.
        dp: DP-SGD parameters, or ``None`` for ordinary training.
        tokenizer: reuse this tokenizer (reference models reuse the target's); by default it comes from ``--base``
            or is trained on ``texts``.
        on_step: called with (steps done, total steps) after every optimiser step.
        compute: the device, and the autocast precision of non-DP training (DP-SGD refuses all but fp32).
        gradient_canaries: with DP, this many white-box gradient canaries, each in its own embedding coordinate
            (``privaudit.training.canary_insertion``; from scratch, in rows reserved for them).
        validation: with ``config.early_stopping``, the validation texts and label ids; by default read from
            ``config.validation_file`` or held out of ``texts`` (``config.validation_fraction``).

    Returns:
        The trained model (unwrapped from Opacus, on ``compute.device``), its tokenizer, with DP the accounting
        summary, and with gradient canaries their record (to save beside the canary file, never in the model
        directory).

    Raises:
        PrivauditError: reduced precision with DP-SGD, a layer book-keeping cannot clip (``grad_sample_mode="bk"``),
            gradient canaries without DP, or more than the unused embedding coordinates.
    """
    check_precision(compute.precision, compute.device.type, dp=dp is not None)
    if gradient_canaries and dp is None:
        raise PrivauditError(
            "--gradient-canaries needs --dp: they audit the DP-SGD noise, which training without DP lacks"
        )
    device = compute.device
    stopper = None
    if config.early_stopping:
        from privaudit.training.early_stopping import EarlyStopping, prepare_validation, validation_loss

        texts, labels, validation = prepare_validation(
            fraction=config.validation_fraction,
            file=config.validation_file,
            seed=config.seed,
            texts=texts,
            labels=np.asarray(labels),
            label_names=label_names,
            validation=validation,
        )
        stopper = EarlyStopping(config.early_stopping)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    model, tokenizer, notes = build_model(config, label_names, texts, tokenizer)
    if config.lora_rank:
        # No --lora-targets: the family's attention projections, recorded so reference models adapt the same ones.
        targets = config.lora_targets or adapter_for(model).default_lora_targets()
        config = dataclasses.replace(config, lora_targets=tuple(targets))
        model = apply_lora(model, rank=config.lora_rank, alpha=config.lora_alpha, targets=config.lora_targets)
    else:
        freeze_for(model, parse_train_layers(config.train_layers))
    # family: privaudit.models' pretrained word vectors stay frozen, whatever the line above unfroze
    for p in getattr(model, "frozen_parameters", list)():
        p.requires_grad_(False)
    trainable = trainable_names(model)
    n_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # Initialised (and LoRA adapters drawn) on the CPU from the seed, then moved: the same initial weights on every device.
    model.to(device)
    model.train()  # from_pretrained returns eval mode; Opacus (and dropout) need training mode
    data = _tensors(tokenizer, texts, labels, config.max_length)
    if stopper is not None:
        validation_batches = _tensors(tokenizer, *validation, config.max_length).tensors
        validation_batches = list(zip(*(t.split(256) for t in validation_batches)))
    canaries = None
    if gradient_canaries:
        from privaudit.training.canary_insertion import plant_gradient_canaries

        # Before the optimiser holds the parameters: from scratch, the embedding grows by the reserved rows.
        canaries = plant_gradient_canaries(
            model,
            tokenizer,
            m=gradient_canaries,
            input_ids=data.tensors[0],
            from_scratch=config.base is None,
            seed=config.seed,
        )
    generator = torch.Generator().manual_seed(config.seed)
    loader = torch.utils.data.DataLoader(data, batch_size=config.batch_size, shuffle=True, generator=generator)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    criterion = torch.nn.CrossEntropyLoss()
    steps_per_epoch = len(loader)
    total = steps_per_epoch * config.epochs
    engine = None
    mode = None
    book_keeping = None
    dp_summary = None
    train_model = model
    if dp is not None:
        from opacus import PrivacyEngine

        sample_rate = 1 / steps_per_epoch
        # Opacus's Poisson sampler draws int(1 / sample_rate) batches an epoch (opacus/utils/uniform_sampler.py): one
        # fewer than len(loader) for some sizes (93, 99, ...), so plan the noise and the progress on its count.
        total = int(1 / sample_rate) * config.epochs
        noise = dp.noise_multiplier
        if noise is None:
            noise = noise_multiplier_for_epsilon(
                target_epsilon=dp.target_epsilon,
                delta=dp.delta,
                sample_rate=sample_rate,
                steps=total,
                accountant=dp.accountant,
            )
        mode = dp.grad_sample_mode
        if mode in ("auto", "bk"):
            from opacus.data_loader import DPDataLoader

            from privaudit.training.bookkeeping import BookKeepingDP

            try:
                book_keeping = BookKeepingDP(
                    model,
                    noise_multiplier=noise,
                    max_grad_norm=dp.max_grad_norm,
                    expected_batch_size=int(len(data) * sample_rate),  # as make_private computes it
                    generator=compute.generator(config.seed + 1),
                )
                book_keeping.canaries = canaries
            except PrivauditError:
                if mode == "bk":
                    raise
                mode = "ghost"  # a layer book-keeping does not cover: Opacus's ghost clipping takes any
            else:
                mode = "bk"
                # Opacus's Poisson sampler on the loader's generator, as make_private sets it up.
                loader = DPDataLoader.from_data_loader(loader)
                criterion = torch.nn.CrossEntropyLoss(reduction="none")
        if book_keeping is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Opacus warns that secure RNG is off; determinism needs it off
                engine = PrivacyEngine(accountant=dp.accountant)
                prepared = engine.make_private(
                    module=model,
                    optimizer=optimizer,
                    data_loader=loader,
                    criterion=criterion,
                    noise_multiplier=noise,
                    max_grad_norm=dp.max_grad_norm,
                    poisson_sampling=True,
                    grad_sample_mode=mode,
                    noise_generator=compute.generator(config.seed + 1),
                )
            if mode == "ghost":
                train_model, optimizer, criterion, loader = prepared
            else:
                train_model, optimizer, loader = prepared
            if canaries is not None:
                from privaudit.training.canary_insertion import hook_opacus

                hook_opacus(optimizer, canaries)
        if canaries is not None:
            canaries.configure(sample_rate=sample_rate, max_grad_norm=dp.max_grad_norm, noise_multiplier=noise)
        dp_summary = {
            "noise_multiplier": float(noise),
            "sample_rate": float(sample_rate),
            "steps": int(total),
            "delta": float(dp.delta),
            "max_grad_norm": float(dp.max_grad_norm),
            "accountant": dp.accountant,
            "grad_sample_mode": mode,  # the one that ran
            "poisson_sampling": True,
        }
        if canaries is not None:
            dp_summary["gradient_canaries"] = canaries.m  # the count only: the coin flips go to the canary file
    # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none.
    scaler = torch.amp.GradScaler(device.type) if compute.precision == "fp16" else None
    start = time.perf_counter()
    train_model.train()
    done = 0
    with warnings.catch_warnings(), ghost_refuses_ties(mode if dp is not None else None):
        warnings.simplefilter("ignore")
        for _epoch in range(config.epochs):
            for batch in loader:
                input_ids, attention_mask, batch_labels = (t.to(device) for t in batch)
                if book_keeping is not None:
                    optimizer.zero_grad(set_to_none=True)
                    if len(batch_labels) == 0:  # Poisson sampling can draw an empty batch: noise only
                        book_keeping.step_empty_batch()
                    else:
                        book_keeping.step_gradients(criterion(_forward(model, input_ids, attention_mask), batch_labels))
                    optimizer.step()
                elif len(batch_labels) == 0:  # Poisson sampling can draw an empty batch
                    _empty_batch_step(optimizer, ghost=mode == "ghost")
                elif scaler is not None:
                    optimizer.zero_grad(set_to_none=True)
                    with compute.autocast():
                        loss = criterion(_forward(train_model, input_ids, attention_mask), batch_labels)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.zero_grad(set_to_none=True)
                    with compute.autocast():  # nothing at fp32, and always with DP (checked above)
                        loss = criterion(_forward(train_model, input_ids, attention_mask), batch_labels)
                    loss.backward()
                    optimizer.step()
                done += 1
                if on_step is not None:
                    on_step(done, total)
            if stopper is not None and stopper.update(
                validation_loss(model, validation_batches, _forward, device), model
            ):
                break
    if stopper is not None:
        stopper.restore(model)  # the best epoch's weights
    seconds = time.perf_counter() - start
    if dp_summary is not None:
        dp_summary["steps"] = int(done)
        # From the recorded fields, not engine.accountant: Opacus's accountant takes 1 / len(its Poisson loader) as the
        # sample rate, above the 1 / len(loader) it samples with when int(1 / sample_rate) rounds down.
        dp_summary["epsilon"] = epsilon(
            noise_multiplier=noise,
            sample_rate=sample_rate,
            steps=done,
            delta=dp.delta,
            accountant=dp.accountant,
        )
        if book_keeping is not None:
            book_keeping.detach()
        else:
            model = train_model._module  # the plain module, without Opacus hooks
        engine = None
    # A plain classifier again: LoRA's adapters folded into the base weights, so the saved model needs no peft.
    model = merge_lora(model)
    model.eval()
    with torch.inference_mode(), compute.autocast():
        full = _tensors(tokenizer, texts, labels, config.max_length)
        correct = 0
        for start_index in range(0, len(full), 256):
            ids, mask, y = (t.to(device) for t in full[start_index : start_index + 256])
            correct += int((_forward(model, ids, mask).argmax(-1) == y).sum())
    return TrainedModel(
        model=model,
        tokenizer=tokenizer,
        label_names=label_names,
        config=config,
        dp=dp_summary,
        seconds=seconds,
        train_accuracy=correct / max(len(full), 1),
        compute=compute,
        trainable=trainable,
        notes=notes,
        n_parameters=n_parameters,
        gradient_canaries=canaries,
        early_stopping=stopper.summary() if stopper is not None else None,
    )
