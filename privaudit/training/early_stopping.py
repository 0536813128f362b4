"""Early stopping on a validation split (one of the defences Parikh et al. 2022 test against ModIvA).

After every epoch the model's mean cross-entropy on the validation data is measured; training stops after
``patience`` epochs without a lower one, and the weights of the best epoch are kept (Prechelt 1998, "Early stopping
- but when?"). The validation examples never train, so choosing the epoch on them spends no training example's privacy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from privaudit.errors import PrivauditError

# A stream of its own, so the split draws nothing from the sampler's, dropout's or noise's generators.
_STREAM = 0x76616C


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices: ``round(fraction * n)`` examples (at least 1) held out, drawn from ``seed``.

    Raises:
        PrivauditError: fewer than one training example would remain.
    """
    n_val = max(1, round(fraction * n))
    if n - n_val < 1:
        raise PrivauditError(f"--validation-fraction {fraction:g} leaves no training example out of {n}")
    order = np.random.default_rng([seed, _STREAM]).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def read_validation(path: str | Path, label_names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """A validation file's texts and label ids.

    Raises:
        PrivauditError: an unreadable file, or a label the training data does not have.
    """
    from privaudit.data import encode_labels, read_dataset

    dataset = read_dataset(Path(path))
    return list(dataset.texts), encode_labels(dataset, {name: i for i, name in enumerate(label_names)})


class EarlyStopping:
    """Tracks the validation loss epoch by epoch; keeps a copy of the best weights."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.losses: list[float] = []
        self.best_epoch = 0
        self._best_state: dict[str, torch.Tensor] | None = None

    def update(self, loss: float, model: torch.nn.Module) -> bool:
        """Record one epoch's validation loss; return whether to stop."""
        self.losses.append(loss)
        epoch = len(self.losses)
        if self.best_epoch == 0 or loss < self.losses[self.best_epoch - 1]:
            self.best_epoch = epoch
            self._best_state = copy.deepcopy(model.state_dict())
        return epoch - self.best_epoch >= self.patience

    def restore(self, model: torch.nn.Module) -> None:
        """Put the best epoch's weights back into ``model``."""
        if self._best_state is not None:
            with torch.no_grad():
                model.load_state_dict(self._best_state)

    def summary(self) -> dict:
        """What ``privaudit.json`` records: the patience, the epoch kept, the epoch training stopped at, the losses."""
        return {
            "patience": self.patience,
            "best_epoch": self.best_epoch,
            "stopped_epoch": len(self.losses),
            "validation_loss": [round(x, 6) for x in self.losses],
        }


def validation_loss(
    model: torch.nn.Module,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    forward: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
) -> float:
    """Mean cross-entropy over the validation batches, in eval mode (restored to training mode after)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, mask, labels in batches:
            ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
            logits = forward(model, ids, mask)
            total += float(torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum"))
            count += len(labels)
    model.train(was_training)
    return total / max(count, 1)


def prepare_validation(
    *,
    fraction: float,
    file: str | None,
    seed: int,
    texts: Sequence[str],
    labels: np.ndarray,
    label_names: Sequence[str],
    validation: tuple[Sequence[str], np.ndarray] | None,
) -> tuple[list[str], np.ndarray, tuple[list[str], np.ndarray]]:
    """The training texts and labels left, and the validation data: given, read from ``file``, or held out.

    Raises:
        PrivauditError: no validation data at all, or a validation file that does not read.
    """
    if validation is not None:
        return list(texts), labels, (list(validation[0]), np.asarray(validation[1]))
    if file:
        return list(texts), labels, read_validation(file, label_names)
    if fraction:
        train, held = split_validation(len(texts), fraction, seed)
        return [texts[i] for i in train], labels[train], ([texts[i] for i in held], labels[held])
    raise PrivauditError("--early-stopping needs validation data: pass --validation FILE or --validation-fraction F")
