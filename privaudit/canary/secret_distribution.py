"""ModIvA's final distribution over secrets: the uniform mixture over restarts of each restart's product of slot
distributions (:mod:`privaudit.canary.modiva`), its log-probabilities and its most likely secrets.

Pure numpy on per-slot log-probabilities, each ``(restarts, |alphabet|)``; secrets are alphabet indices per slot.
"""

from __future__ import annotations

import math

import numpy as np


def mixture_log_prob(log_ps: list[np.ndarray], candidates: np.ndarray) -> np.ndarray:
    """Log-probability of candidates under the uniform mixture over restarts of product distributions."""
    per_restart = sum(lp[:, candidates[:, slot]] for slot, lp in enumerate(log_ps))  # (restarts, n)
    return np.logaddexp.reduce(per_restart, axis=0) - math.log(per_restart.shape[0])


def enumerate_log_prob(log_ps: list[np.ndarray]) -> np.ndarray:
    """Mixture log-probability of every secret, C order over slots (as ``itertools.product``)."""
    total = None
    for r in range(log_ps[0].shape[0]):
        joint = np.zeros(())
        for lp in log_ps:
            joint = np.add.outer(joint, lp[r])
        joint = joint.ravel()
        total = joint if total is None else np.logaddexp(total, joint)
    return total - math.log(log_ps[0].shape[0])


def beam_top_k(log_ps: list[np.ndarray], k: int) -> np.ndarray:
    """Each restart's exact top-k secrets under its product distribution (beam search over slots), merged."""
    found = set()
    for r in range(log_ps[0].shape[0]):
        beam = [((), 0.0)]
        for lp in log_ps:
            beam = sorted(
                ((s + (v,), score + lp[r, v]) for s, score in beam for v in range(lp.shape[1])),
                key=lambda item: -item[1],
            )[:k]
        found.update(s for s, _ in beam)
    return np.array(sorted(found), dtype=np.int64)
