"""ModIvA: white-box model inversion of a canary (Parikh, Dupuy, Gupta, ACL 2022, "Canary Extraction in Natural
Language Understanding Models").

The attacker knows the canary's template and label and the model's weights, and searches for the secret that makes the
model predict that label. The template's fixed tokens stay as they are; each slot ``i`` is relaxed into a Gumbel-softmax
sample over its alphabet, ``y_i = softmax((theta_i + g) / T)`` with fresh Gumbel noise ``g`` each step (Jang et al.
2017, as the paper does), and fed through ``inputs_embeds`` as ``sum_v y_i[v] * E[token(v)]``. The slot logits
``theta`` are trained with Adam to minimise the cross-entropy to the label plus ``entropy_weight`` times the mean
entropy of ``p_i = softmax(theta_i / T)``, which pushes each slot toward one-hot, while ``T`` anneals geometrically
from ``temperature_start`` to ``temperature_end``. ``restarts`` random starting points run as one batch. On the
``intent-tiny`` fixture the noise halves the true secrets' mean rank against a noise-free annealed softmax: it keeps
restarts from settling on mixtures of embeddings that no discrete secret reproduces.

Decoding: each restart's argmax per slot is a candidate, and so are the ``rescore`` most likely secrets of the final
distribution (a shortlist: 256 of a 4-digit code's 10,000 by default); all are scored with a real forward pass of
token ids, and the one with the lowest loss is the guess. The relaxation finds where to look and the model's own loss
picks: with only the argmaxes and the top 10 scored, ModIvA missed 5 of the 11 secrets that the exhaustive ranking put
first in the modiva-study benchmark.

The final distribution over secrets is the uniform mixture over restarts of each restart's product distribution
``prod_i p_{r,i}`` at ``temperature_end``; unlike a product of averaged marginals it keeps each restart's slots
together. The true secret's rank under it is ``1 + #{other secrets with probability >= the secret's}``: ties count
against the secret, as in :mod:`privaudit.canary.exposure`, so the rank is never overstated. The whole space is enumerated
when it has at most ``MAX_ENUMERATED`` secrets; above that the rank is ``None`` and ``top_k`` comes from each
restart's exact top-k (beam search over slots), re-scored under the mixture.

Exact where exact is cheap: when the secret space has at most ``exact_budget`` secrets (default 10^5), every one is
scored with the model, through exposure's enumeration (:func:`privaudit.canary.exposure.enumerated_log_probs`: one
pass per space and audit, shared with the exposure attack), and the guess is the secret of lowest loss for the
label: the exhaustive rank 1, which no search can beat. The search still runs, and its own guess is reported beside
(``search_guess``, ``search_recovered``): how well the relaxation alone does. Over the budget the search's guess is
the guess, and ``guess_method`` says so. On a freshly trained model the search guessed a code ranked 454th while
the true code had loss rank 1 of 10,000 (issue 21): a search that only shortlists can miss what enumeration finds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from privaudit.canary.canaries import Canary
from privaudit.canary.exposure import MAX_ENUMERATE, enumerated_log_probs
from privaudit.canary.secret_distribution import beam_top_k, enumerate_log_prob, mixture_log_prob
from privaudit.canary.slots import SlotLayout, slot_layout
from privaudit.errors import PrivauditError
from privaudit.target import Target

MAX_ENUMERATED = 1_000_000  # secrets; above this the true secret's rank is not computed
RESCORE_BATCH = 256  # candidates per forward pass when scoring them exactly
EXACT_BUDGET = 100_000  # secrets; up to this many, the guess is the exhaustive argmin of the loss


@dataclass(frozen=True)
class ModivaConfig:
    """How to run the inversion.

    Attributes:
        steps: Adam steps.
        lr: Adam learning rate on the slot logits.
        restarts: random starting points, optimised together as one batch.
        temperature_start: Gumbel-softmax temperature at the first step.
        temperature_end: temperature at the last step (geometric schedule in between); the final distribution
            over secrets is taken at this temperature.
        entropy_weight: weight of the slots' mean entropy in the loss (pushes toward one-hot).
        top_k: guesses reported from the final distribution.
        rescore: the most likely secrets of the final distribution scored exactly (a forward pass each), beside
            every restart's argmax; the lowest loss among them is the guess.
        exact_budget: secret spaces of at most this many secrets are scored whole, and the guess is the one of
            lowest loss (0: never; at most exposure's ``MAX_ENUMERATE``); larger spaces rely on the search alone.
        seed: seeds the starting points and the Gumbel noise; the same seed gives the same result.
    """

    steps: int = 300
    lr: float = 0.1
    restarts: int = 16
    temperature_start: float = 1.0
    temperature_end: float = 0.05
    entropy_weight: float = 0.1
    top_k: int = 10
    rescore: int = 256
    exact_budget: int = EXACT_BUDGET
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.restarts < 1 or self.top_k < 1 or self.rescore < 1:
            raise PrivauditError("ModIvA needs steps, restarts, top_k and rescore of at least 1")
        if not 0 < self.temperature_end <= self.temperature_start:
            raise PrivauditError("ModIvA needs 0 < temperature_end <= temperature_start")
        if self.lr <= 0 or self.entropy_weight < 0:
            raise PrivauditError("ModIvA needs lr > 0 and entropy_weight >= 0")
        if isinstance(self.exact_budget, bool) or not isinstance(self.exact_budget, int):
            raise PrivauditError(f"ModIvA's exact_budget must be a whole number of secrets, got {self.exact_budget!r}")
        if not 0 <= self.exact_budget <= MAX_ENUMERATE:
            raise PrivauditError(
                f"ModIvA's exact_budget must be between 0 (never enumerate) and {MAX_ENUMERATE:,} "
                f"(exposure's enumeration limit), got {self.exact_budget:,}"
            )


@dataclass(frozen=True)
class ModivaResult:
    """Outcome of inverting one canary.

    Attributes:
        secret: the true secret.
        guess: the attack's answer: within the exact budget, the secret of lowest loss of the whole space (the
            exhaustive rank 1); over it, the search's guess.
        recovered: whether the guess is the secret.
        slot_accuracy: share of slots the guess has right.
        rank: rank of the true secret under the final distribution (1 = most likely); ``None`` above
            ``MAX_ENUMERATED`` secrets.
        top_k: the most likely secrets under the final distribution, with their probabilities.
        space_size: number of possible secrets.
        random_baseline: ``1 / space_size``, the chance that a random guess is exact.
        guess_method: ``"exhaustive"`` (every secret scored: ``space_size <= exact_budget``) or ``"search"``.
        search_guess: the search's own guess: the decoded candidate of lowest loss among the restarts' argmaxes and
            the ``rescore`` likeliest secrets of its final distribution.
        search_recovered: whether the search's own guess is the secret.
        exact_budget: the budget the space was held against.
        seconds: wall-clock time of the attack; not in :meth:`to_dict`, so that the same seed gives the same report.
        inserted: whether the canary was in the training data (``False`` for a control).
    """

    secret: tuple[str, ...]
    guess: tuple[str, ...]
    recovered: bool
    slot_accuracy: float
    rank: int | None
    top_k: tuple[tuple[tuple[str, ...], float], ...]
    space_size: int
    random_baseline: float
    guess_method: str
    search_guess: tuple[str, ...]
    search_recovered: bool
    exact_budget: int
    seconds: float
    inserted: bool = True

    def to_dict(self) -> dict:
        return {
            "secret": list(self.secret),
            "guess": list(self.guess),
            "recovered": self.recovered,
            "slot_accuracy": self.slot_accuracy,
            "rank": self.rank,
            "top_k": [{"secret": list(s), "probability": p} for s, p in self.top_k],
            "space_size": self.space_size,
            "random_baseline": self.random_baseline,
            "guess_method": self.guess_method,
            "search_guess": list(self.search_guess),
            "search_recovered": self.search_recovered,
            "exact_budget": self.exact_budget,
            "inserted": self.inserted,
        }


@contextmanager
def _frozen(model: torch.nn.Module):
    """Eval mode, no parameter gradients; restored afterwards, since the target is shared."""
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)


def _invert(target: Target, layout: SlotLayout, label_ids: Sequence[int], config: ModivaConfig) -> list[torch.Tensor]:
    """Optimise the slot logits of every (label, restart) pair as one batch.

    Every label starts from the same ``restarts`` points and gets the same Gumbel noise, drawn from ``config.seed``,
    so a canary's run does not depend on which others share its batch. Returns each slot's final logits divided by
    ``temperature_end``, shape ``(labels, restarts, |alphabet|)``, on the CPU.

    The random numbers are drawn on the CPU and moved to the model's device, so every device starts from the same
    points and sees the same noise; the optimisation runs in fp32 there.
    """
    device = target.compute.device
    generator = torch.Generator().manual_seed(config.seed)
    n_labels, restarts = len(label_ids), config.restarts
    rows = n_labels * restarts
    table = target.input_embeddings().weight.detach()
    base = table[layout.input_ids[0].to(device)].expand(rows, -1, -1)
    alphabets = [table[torch.tensor(ids, device=device)] for ids in layout.token_ids]
    starts = [torch.randn(restarts, len(ids), generator=generator) for ids in layout.token_ids]
    thetas = [start.repeat(n_labels, 1).to(device).requires_grad_() for start in starts]
    mask = layout.attention_mask.to(device).expand(rows, -1)
    labels = torch.tensor(label_ids, dtype=torch.long, device=device).repeat_interleave(restarts)
    optimizer = torch.optim.Adam(thetas, lr=config.lr)
    ratio = config.temperature_end / config.temperature_start
    for step in range(config.steps):
        temperature = config.temperature_start * ratio ** (step / max(config.steps - 1, 1))
        embeds = base.clone()
        entropy = torch.zeros(rows, device=device)
        for theta, alphabet, position in zip(thetas, alphabets, layout.positions):
            # Gumbel-softmax (Jang et al. 2017), as the paper relaxes its one-hot tokens; every label gets the same
            # noise, so a canary's run does not depend on its batch.
            uniform = torch.rand(restarts, theta.shape[-1], generator=generator).clamp_(1e-10, 1 - 1e-10)
            gumbel = -torch.log(-torch.log(uniform)).repeat(n_labels, 1).to(device)
            relaxed = torch.softmax((theta + gumbel) / temperature, dim=-1)
            embeds[:, position] = relaxed @ alphabet
            log_p = torch.log_softmax(theta / temperature, dim=-1)
            entropy = entropy - (log_p.exp() * log_p).sum(-1)
        logits = target.logits_from_embeddings(embeds, mask)
        # Rows are independent attacks: sum their losses so no row's gradient shrinks with the batch.
        loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
        loss = loss + config.entropy_weight * entropy.sum() / len(thetas)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [(theta.detach() / config.temperature_end).double().cpu().view(n_labels, restarts, -1) for theta in thetas]


def _losses(target: Target, layout: SlotLayout, label_id: int, candidates: np.ndarray) -> np.ndarray:
    """Cross-entropy to the label of discrete candidates (alphabet indices, shape ``(n, slots)``), from token ids."""
    ids = layout.input_ids.repeat(len(candidates), 1)
    for slot, position in enumerate(layout.positions):
        ids[:, position] = torch.tensor(layout.token_ids[slot])[torch.from_numpy(candidates[:, slot])]
    device = target.compute.device
    mask = layout.attention_mask.to(device)
    losses = []
    with torch.inference_mode():
        for chunk in ids.split(RESCORE_BATCH):
            chunk = chunk.to(device)
            logits = target.model(input_ids=chunk, attention_mask=mask.expand_as(chunk)).logits  # unpadded rows
            truth = torch.full((len(chunk),), label_id, device=device)
            losses.append(torch.nn.functional.cross_entropy(logits.float(), truth, reduction="none").cpu().numpy())
    return np.concatenate(losses)


def _label_id(target: Target, canary: Canary) -> int:
    if canary.label not in target.label2id:
        raise PrivauditError(
            f"canary label '{canary.label}' is not a label of the model at {target.path} "
            f"(its labels: {', '.join(sorted(target.label2id))})"
        )
    return target.label2id[canary.label]


def _result(
    target: Target, canary: Canary, layout: SlotLayout, label_id: int, logits: list[torch.Tensor], config: ModivaConfig
) -> ModivaResult:
    """Decode, rank and score one canary from its restarts' final slot logits, each ``(restarts, |alphabet|)``."""
    started = time.perf_counter()
    log_ps = [torch.log_softmax(lg, dim=-1).numpy() for lg in logits]
    sizes = [len(a) for a in canary.alphabets]
    space_size = math.prod(sizes)
    k = min(config.top_k, space_size)
    shortlist = min(max(config.rescore, k), space_size)
    if space_size <= MAX_ENUMERATED:
        log_prob = enumerate_log_prob(log_ps)
        truth = [a.index(v) for a, v in zip(canary.alphabets, canary.secret)]
        # The secret itself is counted once, so it ranks 1 when nothing else is as likely.
        rank = int((log_prob >= log_prob[np.ravel_multi_index(truth, sizes)]).sum())
        order = np.argsort(-log_prob, kind="stable")[:shortlist]
        likely, likely_log_prob = np.stack(np.unravel_index(order, sizes), axis=1), log_prob[order]
    else:
        rank = None
        pool = beam_top_k(log_ps, shortlist)
        pool_log_prob = mixture_log_prob(log_ps, pool)
        order = np.argsort(-pool_log_prob, kind="stable")[:shortlist]
        likely, likely_log_prob = pool[order], pool_log_prob[order]
    top, top_log_prob = likely[:k], likely_log_prob[:k]
    decoded = np.stack([lg.argmax(-1).numpy() for lg in logits], axis=1)
    candidates = np.unique(np.concatenate([decoded, likely]), axis=0)
    best = candidates[int(np.argmin(_losses(target, layout, label_id, candidates)))]
    guess = tuple(alphabet[v] for alphabet, v in zip(canary.alphabets, best))
    return ModivaResult(
        secret=canary.secret,
        guess=guess,
        recovered=guess == canary.secret,
        slot_accuracy=_slot_accuracy(guess, canary.secret),
        rank=rank,
        top_k=tuple(
            (tuple(alphabet[v] for alphabet, v in zip(canary.alphabets, row)), float(math.exp(lp)))
            for row, lp in zip(top, top_log_prob)
        ),
        space_size=space_size,
        random_baseline=1.0 / space_size,
        guess_method="search",
        search_guess=guess,
        search_recovered=guess == canary.secret,
        exact_budget=config.exact_budget,
        seconds=time.perf_counter() - started,
        inserted=canary.inserted,
    )


def _slot_accuracy(guess: tuple[str, ...], secret: tuple[str, ...]) -> float:
    return float(np.mean([g == s for g, s in zip(guess, secret)]))


def _exhaustive(
    target: Target, canary: Canary, label_id: int, result: ModivaResult, *, batch_size: int, scored: dict | None
) -> ModivaResult:
    """The result with the exhaustive guess: the secret of lowest loss for the label among every secret of the space.

    The loss is exposure's (``-log p(label)`` of each candidate text, from the same enumeration), and ties go to
    the first secret in enumeration order, so the guess is the secret whenever exposure ranks it 1.
    """
    started = time.perf_counter()
    log_probs = enumerated_log_probs(target, canary, batch_size=batch_size, scored=scored)
    index = np.unravel_index(int(np.argmax(log_probs[:, label_id])), [len(a) for a in canary.alphabets])
    guess = tuple(alphabet[int(v)] for alphabet, v in zip(canary.alphabets, index))
    return replace(
        result,
        guess=guess,
        recovered=guess == canary.secret,
        slot_accuracy=_slot_accuracy(guess, canary.secret),
        guess_method="exhaustive",
        seconds=result.seconds + time.perf_counter() - started,
    )


def extract(
    target: Target, canary: Canary, *, config: ModivaConfig = ModivaConfig(), batch_size: int = 512
) -> ModivaResult:
    """Invert one canary: search for its secret knowing only the model, the template and the label.

    Args:
        target: the white-box model.
        canary: the canary to extract; its secret is used only to score the attack.
        config: the attack's settings.
        batch_size: candidates per forward pass when the space is enumerated (within ``config.exact_budget``).

    Returns:
        The guess, whether it is right, the search's own guess, the true secret's rank and the top guesses.

    Raises:
        PrivauditError: the label is not one of the model's, or an alphabet value is not a single token.
    """
    return extract_all(target, [canary], config=config, batch_size=batch_size)[0]


def extract_all(
    target: Target,
    canaries: Sequence[Canary],
    *,
    config: ModivaConfig = ModivaConfig(),
    on_canary: Callable[[ModivaResult], None] | None = None,
    batch_size: int = 512,
    scored: dict | None = None,
) -> list[ModivaResult]:
    """Invert many canaries, batching those that share a template.

    The attack never sees a secret, so canaries with the same template and label share one inversion, and each
    template's labels are inverted together in one batch. A result's ``seconds`` is its share of its batch's time.

    Args:
        target: the white-box model.
        canaries: the canaries to extract.
        config: the attack's settings.
        on_canary: called with each result as it is ready.
        batch_size: candidates per forward pass when a space is enumerated (within ``config.exact_budget``).
        scored: the audit's enumerated spaces, shared with exposure
            (:attr:`~privaudit.canary.attack.ExtractionContext.scored`); ``None``: a space is scored for this call.

    Returns:
        One result per canary, in input order.

    Raises:
        PrivauditError: a label is not one of the model's, or an alphabet value is not a single token.
    """
    label_ids = [_label_id(target, canary) for canary in canaries]
    groups: dict[tuple, list[int]] = {}
    for index, canary in enumerate(canaries):
        groups.setdefault((canary.template, canary.alphabets), []).append(index)
    layouts = {key: slot_layout(target, canaries[members[0]]) for key, members in groups.items()}
    results: list[ModivaResult | None] = [None] * len(canaries)
    for key, members in groups.items():
        started = time.perf_counter()
        labels = sorted({label_ids[i] for i in members})
        with torch.random.fork_rng(devices=[]), _frozen(target.model):
            torch.manual_seed(config.seed)
            logits = _invert(target, layouts[key], labels, config)
        shared = (time.perf_counter() - started) / len(members)
        for i in members:
            row = labels.index(label_ids[i])
            result = _result(target, canaries[i], layouts[key], label_ids[i], [lg[row] for lg in logits], config)
            if result.space_size <= config.exact_budget:
                scored = {} if scored is None else scored
                result = _exhaustive(target, canaries[i], label_ids[i], result, batch_size=batch_size, scored=scored)
            results[i] = replace(result, seconds=result.seconds + shared)
            if on_canary is not None:
                on_canary(results[i])
    return results
