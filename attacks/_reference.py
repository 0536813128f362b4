"""Helpers shared by the reference-model attacks: per-example statistics over a subset of reference models."""

from __future__ import annotations

import numpy as np


def masked_mean(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean of ``values`` over the reference models where ``mask`` is ``True``.

    Args:
        values: per-model statistic, shape ``(K, n)``.
        mask: which entries to use, shape ``(K, n)``, bool (e.g. ``~reference_in`` for OUT models).

    Returns:
        ``(mean, count)``, each of shape ``(n,)``; ``mean`` is NaN where ``count`` is 0.
    """
    count = mask.sum(axis=0)
    total = np.where(mask, values, 0.0).sum(axis=0)
    mean = np.divide(total, count, out=np.full(count.shape, np.nan), where=count > 0)
    return mean, count


def fill_missing(mean: np.ndarray) -> np.ndarray:
    """Replace NaN entries (examples with no usable reference model) by the mean over the other examples."""
    if np.isnan(mean).any():
        mean = np.where(np.isnan(mean), np.nanmean(mean), mean)
    return mean
