"""Numerically stable functions of logits, shared by membership inference and canary extraction."""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def losses(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy loss of each example; works on ``(n, C)`` or ``(K, n, C)`` logits."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64))
    return -np.take_along_axis(logp, np.broadcast_to(labels, logp.shape[:-1])[..., None], axis=-1)[..., 0]
