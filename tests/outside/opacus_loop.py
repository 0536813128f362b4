"""A DP-SGD fine-tuning script as a user outside privaudit writes it: torch, transformers and Opacus's PrivacyEngine,
Poisson sampling, a plain loop. privaudit's only part is the optional ``GradientCanaries`` hook.

``variant`` makes it one of the buggy pipelines the audit must catch, each patched in the way a buggy fork would be:

- ``honest``: Opacus as shipped;
- ``noise0``: the optimizer's ``add_noise`` adds nothing (the accountant still books the claimed noise);
- ``noise_quarter``: it adds a quarter of the claimed noise;
- ``no_clipping``: ``clip_and_accumulate`` sums the per-sample gradients without clipping them;
- ``shuffled``: shuffled fixed-size batches, accounted by Opacus as Poisson sampling at rate batch / n.

The base model is generated here: a one-layer BERT whose WordPiece vocabulary holds the data's words and thousands of
words the data never uses, so that many embedding rows are free.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from opacus import PrivacyEngine
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers.optimizer import _mark_as_processed
from torch.utils.data import DataLoader, TensorDataset
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

VARIANTS = ("honest", "noise0", "noise_quarter", "no_clipping", "shuffled")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = "play some jazz rock blues folk music please set an alarm for at am wake me up what is the weather in paris"
EXTRA_WORDS = 4000  # words no text uses: 4,000 free rows of width 32 leave room for 128,000 canaries


def make_texts(n: int, *, seed: int) -> tuple[list[str], list[int]]:
    """``n`` short texts of three intents and their labels."""
    rng = np.random.default_rng(seed)
    templates = (
        ("play some {g} music please", "play {g} please"),
        ("set an alarm for {h} am", "wake me up at {h}"),
        ("what is the weather in paris", "weather in paris at {h}"),
    )
    genres, hours = ("jazz", "rock", "blues", "folk"), [str(h) for h in range(1, 13)]
    texts, labels = [], []
    for i in range(n):
        label = i % 3
        template = templates[label][rng.integers(2)]
        texts.append(template.format(g=genres[rng.integers(4)], h=hours[rng.integers(12)]))
        labels.append(label)
    return texts, labels


def make_base(directory: Path, *, seed: int = 0, texts: list[str] | None = None, num_labels: int = 3) -> Path:
    """Write a tiny BERT base model and its tokenizer to ``directory``: a vocabulary of the words of ``texts`` (by
    default this module's) and thousands of words they never use."""
    directory.mkdir(parents=True, exist_ok=True)
    words = {w for text in texts for w in text.lower().split()} if texts else set(WORDS.split())
    vocab = SPECIALS + sorted(words | {str(h) for h in range(1, 13)})
    vocab += [f"unseen{i}" for i in range(EXTRA_WORDS)]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=num_labels,
    )
    BertForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@dataclass
class Run:
    """What a training run reports: the accountant's epsilon, the steps, the final training accuracy."""

    epsilon: float
    delta: float
    steps: int
    sample_rate: float
    accuracy: float


def _add_noise_scaled(factor: float):
    def add_noise(self) -> None:  # Opacus's add_noise with a wrong standard deviation
        std = factor * self.noise_multiplier * self.max_grad_norm
        for p in self.params:
            noise = torch.normal(0.0, std, size=p.summed_grad.shape, generator=self.generator) if std else 0.0
            p.grad = (p.summed_grad + noise).view_as(p)
            _mark_as_processed(p.summed_grad)

    return add_noise


def _clip_and_accumulate_unclipped(self) -> None:  # the per-sample gradients summed as they are
    for p in self.params:
        grad = self._get_flat_grad_sample(p).sum(dim=0)
        p.summed_grad = grad if p.summed_grad is None else p.summed_grad + grad
        _mark_as_processed(p.grad_sample)


@functools.lru_cache
def noise_multiplier_for(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The noise multiplier that Opacus's RDP accountant gives epsilon after ``steps`` (cached: it takes seconds)."""
    return get_noise_multiplier(
        target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate, steps=steps, accountant="rdp"
    )


def train(
    base: Path,
    *,
    variant: str = "honest",
    seed: int = 0,
    n: int = 60,
    batch_size: int = 12,
    epochs: int = 30,
    target_epsilon: float = 8.0,
    delta: float = 1e-5,
    canaries: int = 0,
    canary_file: Path | None = None,
) -> Run:
    """Fine-tune ``base`` with DP-SGD (q = batch_size / n, epochs / q steps); with ``canaries``, under the hook."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}")
    torch.manual_seed(seed)
    tokenizer = BertTokenizerFast.from_pretrained(base, local_files_only=True)
    model = BertForSequenceClassification.from_pretrained(base, local_files_only=True)
    texts, labels = make_texts(n, seed=seed)
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")
    # Every input with the batch's size, position_ids and token_type_ids too, as Opacus needs for per-example gradients.
    dataset = TensorDataset(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"], torch.tensor(labels))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    model.train()  # Opacus checks the mode
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    engine = PrivacyEngine(accountant="rdp")
    model, optimizer, loader = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=noise_multiplier_for(target_epsilon, delta, 1 / len(loader), epochs * len(loader)),
        max_grad_norm=1.0,
        poisson_sampling=variant != "shuffled",
        noise_generator=torch.Generator().manual_seed(seed + 1),
    )
    if variant == "noise0":
        optimizer.add_noise = types.MethodType(_add_noise_scaled(0.0), optimizer)
    elif variant == "noise_quarter":
        optimizer.add_noise = types.MethodType(_add_noise_scaled(0.25), optimizer)
    elif variant == "no_clipping":
        optimizer.clip_and_accumulate = types.MethodType(_clip_and_accumulate_unclipped, optimizer)
    hook = None
    if canaries:
        from privaudit.integrations.opacus import GradientCanaries

        hook = GradientCanaries(
            optimizer,
            model=model,
            token_ids=enc["input_ids"],
            sample_rate=1 / len(loader),
            out=canary_file,
            count=canaries,
            seed=seed,
        )
    steps = 0
    for _ in range(epochs):
        for input_ids, token_type_ids, attention_mask, y in loader:
            optimizer.zero_grad()
            positions = torch.arange(input_ids.shape[1]).expand_as(input_ids)
            out = model(
                input_ids=input_ids,
                token_type_ids=token_type_ids,
                position_ids=positions,
                attention_mask=attention_mask,
                labels=y,
            )
            out.loss.backward()
            optimizer.step()
            steps += 1
    if hook is not None:
        hook.save()
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    accuracy = float((logits.argmax(-1) == torch.tensor(labels)).float().mean())
    return Run(
        epsilon=engine.get_epsilon(delta), delta=delta, steps=steps, sample_rate=1 / len(loader), accuracy=accuracy
    )
