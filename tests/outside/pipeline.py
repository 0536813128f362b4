"""A training pipeline written as an outside user would: plain transformers and Opacus, not privaudit's trainer.

privaudit's data canaries must work on models that privaudit did not train, so the tests (and the benchmark) train
with this loop: load a base with ``AutoModelForSequenceClassification``, tokenize a JSONL file, and run DP-SGD with
Opacus's ``PrivacyEngine`` and Poisson sampling (or plain SGD without it), then ``save_pretrained``. Nothing here
imports privaudit.

:func:`make_base` builds the small base model the tests fine-tune from: a BERT encoder with a WordPiece vocabulary
much wider than the data (the data's words plus generated ones), as a pretrained vocabulary is wider than any
fine-tuning set.
"""

from __future__ import annotations

import contextlib
import json
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass(frozen=True)
class BaseShape:
    """The size of a generated base: a BERT encoder."""

    hidden_size: int = 32
    num_hidden_layers: int = 1
    num_attention_heads: int = 2
    intermediate_size: int = 64
    max_position_embeddings: int = 64


def make_base(
    out: Path,
    texts: Sequence[str],
    *,
    extra_words: int = 2000,
    extra_tokens: Sequence[str] = (),
    shape: BaseShape = BaseShape(),
    seed: int = 0,
) -> Path:
    """Save a randomly initialised BERT encoder and a WordPiece tokenizer to ``out``.

    The vocabulary holds every word of ``texts``, every character (and its ``##`` continuation), ``extra_words``
    generated lower-case words that no text uses, and ``extra_tokens`` as given (e.g. ``[unused0]``, which raw text
    cannot reach).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    words: set[str] = set()
    for text in texts:
        words.update(w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in words for c in w} | set(string.ascii_lowercase) | set(string.digits))
    rng = np.random.default_rng(seed)
    extra: list[str] = []
    seen = set(words) | set(chars)
    while len(extra) < extra_words:
        word = "".join(rng.choice(list(string.ascii_lowercase), size=int(rng.integers(5, 9))))
        if word not in seen:
            seen.add(word)
            extra.append(word)
    tokens = SPECIALS + chars + [f"##{c}" for c in chars] + sorted(words - set(chars)) + extra + list(extra_tokens)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = splitter
    tok.add_special_tokens(SPECIALS)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tokens.index("[CLS]")), ("[SEP]", tokens.index("[SEP]"))],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=shape.max_position_embeddings,
    )
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokens),
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_position_embeddings,
        type_vocab_size=1,
        pad_token_id=0,
    )
    BertModel(config, add_pooling_layer=True).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return Path(out)


def read_jsonl(path: Path) -> tuple[list[str], list[str]]:
    """Texts and labels (as strings) of a JSONL file of ``{"text", "label"}`` records."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["text"] for r in rows], [str(r["label"]) for r in rows]


def train_classifier(
    base: Path,
    data: Path,
    out: Path,
    *,
    noise_multiplier: float | None,
    max_grad_norm: float = 1.0,
    sample_rate: float = 0.2,
    steps: int = 150,
    max_length: int = 32,
    lr: float = 1e-3,
    optimizer: str = "adam",
    freeze_embeddings: bool = False,
    seed: int = 0,
    variant: str = "honest",
    gradient_canaries: int = 0,
    canary_file: Path | None = None,
    physical_batch_size: int | None = None,
) -> dict:
    """Fine-tune a sequence classifier from ``base`` on ``data`` and save it to ``out`` (safetensors).

    Args:
        base: the base model directory (encoder and tokenizer).
        data: JSONL with ``text`` and ``label``.
        out: where to ``save_pretrained`` the classifier and its tokenizer.
        noise_multiplier: DP-SGD through Opacus with Poisson sampling at ``sample_rate`` (0: clipping, no noise);
            ``None``: no Opacus, plain shuffled batches of ``sample_rate * len(data)``.
        max_grad_norm: Opacus's per-example clipping norm.
        sample_rate: Poisson rate (expected batch size over the data size).
        steps: optimiser steps.
        max_length: tokens per text (truncated and padded).
        lr: learning rate.
        optimizer: ``"adam"`` or ``"sgd"``.
        freeze_embeddings: keep the word embeddings at the base's values.
        seed: seeds the head, the sampling and the noise.
        variant: with Opacus, the pipeline as shipped (``"honest"``) or one of the buggy ones of
            :mod:`outside.opacus_loop` (``noise0``, ``noise_quarter``, ``no_clipping``; ``shuffled``: shuffled
            fixed-size batches of ``sample_rate * len(data)``, which Opacus accounts as Poisson sampling at
            ``1 / batches``).
        gradient_canaries: with Opacus, this many gradient canaries of privaudit's hook
            (``privaudit.integrations.opacus.GradientCanaries``), recorded to ``canary_file``; 0: no hook.
        canary_file: where the hook writes its canary file (and its ``.gradient.npz`` record).
        physical_batch_size: with Opacus, split each Poisson batch into physical batches of at most this many
            examples (Opacus's ``BatchMemoryManager``: the same DP step, less memory for per-sample gradients).

    Returns:
        ``{"steps", "train_accuracy", "noise_multiplier", "sample_rate", "accounted_sample_rate", "epsilon"}``
        (``epsilon``: the RDP accountant's at delta 1e-5, ``None`` without Opacus).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if variant != "honest" and noise_multiplier is None:
        raise ValueError(f"variant {variant!r} needs Opacus (a noise_multiplier)")
    if gradient_canaries and (noise_multiplier is None or canary_file is None):
        raise ValueError("gradient_canaries needs Opacus (a noise_multiplier) and a canary_file")
    hook = None
    accounted_rate = None
    torch.manual_seed(seed)
    texts, labels = read_jsonl(data)
    names = sorted(set(labels))
    label2id = {n: i for i, n in enumerate(names)}
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        local_files_only=True,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id=label2id,
    )
    model.config.hidden_dropout_prob = 0.0
    if freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding="max_length", return_tensors="pt")
    y = torch.tensor([label2id[label] for label in labels])
    dataset = torch.utils.data.TensorDataset(enc["input_ids"], enc["attention_mask"], y)
    batch_size = max(1, round(sample_rate * len(dataset)))
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    model.train()
    if noise_multiplier is not None:
        from opacus import PrivacyEngine

        engine = PrivacyEngine(accountant="rdp")
        model, opt, loader = engine.make_private(
            module=model,
            optimizer=opt,
            data_loader=loader,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            poisson_sampling=variant != "shuffled",
            noise_generator=torch.Generator().manual_seed(seed + 1),
        )
        _break(opt, variant)
        accounted_rate = 1 / len(loader) if variant == "shuffled" else sample_rate
        if gradient_canaries:
            from privaudit.integrations.opacus import GradientCanaries

            hook = GradientCanaries(
                opt,
                model=model,
                token_ids=enc["input_ids"],
                sample_rate=accounted_rate,
                out=canary_file,
                count=gradient_canaries,
                seed=seed,
            )
    done = 0
    while done < steps:
        with contextlib.ExitStack() as stack:
            batches = loader
            if physical_batch_size is not None and noise_multiplier is not None:
                from opacus.utils.batch_memory_manager import BatchMemoryManager

                batches = stack.enter_context(
                    BatchMemoryManager(data_loader=loader, max_physical_batch_size=physical_batch_size, optimizer=opt)
                )
            for ids, mask, target in batches:
                if done >= steps:
                    break
                opt.zero_grad()
                if len(target):
                    # Explicit per-example positions and segments: BERT's default ones are one row shared by the
                    # batch, whose per-sample gradient Opacus cannot compute.
                    positions = torch.arange(ids.shape[1]).expand_as(ids)
                    logits = model(
                        input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids), position_ids=positions
                    ).logits
                    torch.nn.functional.cross_entropy(logits, target).backward()
                opt.step()
                # A physical batch that is not the last of its Poisson batch only accumulates: no step taken.
                done += not getattr(opt, "_is_last_step_skipped", False)
    if hook is not None:
        hook.save()
    plain = model._module if hasattr(model, "_module") else model
    plain.eval()
    with torch.no_grad():
        predicted = torch.cat(
            [
                plain(
                    input_ids=enc["input_ids"][i : i + 256], attention_mask=enc["attention_mask"][i : i + 256]
                ).logits.argmax(-1)
                for i in range(0, len(y), 256)
            ]
        )
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {
        "steps": done,
        "train_accuracy": float((predicted == y).float().mean()),
        "noise_multiplier": noise_multiplier,
        "sample_rate": sample_rate,
        "accounted_sample_rate": accounted_rate,
        "epsilon": None
        if noise_multiplier is None
        else rdp_epsilon(noise_multiplier=noise_multiplier, sample_rate=accounted_rate, steps=done, delta=1e-5),
    }


def _break(optimizer, variant: str) -> None:
    """Patch Opacus's optimizer as a buggy fork would (see :mod:`outside.opacus_loop`); ``honest``, ``shuffled``: as is."""
    import types

    from outside.opacus_loop import VARIANTS, _add_noise_scaled, _clip_and_accumulate_unclipped

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}")
    if variant == "noise0":
        optimizer.add_noise = types.MethodType(_add_noise_scaled(0.0), optimizer)
    elif variant == "noise_quarter":
        optimizer.add_noise = types.MethodType(_add_noise_scaled(0.25), optimizer)
    elif variant == "no_clipping":
        optimizer.clip_and_accumulate = types.MethodType(_clip_and_accumulate_unclipped, optimizer)


def rdp_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Opacus's RDP epsilon of the run (what the pipeline would claim)."""
    from opacus.accountants import RDPAccountant

    if noise_multiplier <= 0:
        return math.inf
    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, steps)]
    return accountant.get_epsilon(delta)
