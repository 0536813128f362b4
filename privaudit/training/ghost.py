"""Opacus's ghost clipping on a model it cannot clip: one line, pointing to book-keeping."""

from __future__ import annotations

import contextlib

from privaudit.errors import PrivauditError


@contextlib.contextmanager
def ghost_refuses_ties(mode: str | None):
    """Opacus's ghost clipping cannot clip a weight used twice a step (tied, or a layer run twice): say so in one line."""
    try:
        yield
    except NotImplementedError as err:
        if mode != "ghost" or "tying" not in str(err):
            raise
        raise PrivauditError(
            "Opacus's ghost clipping does not support tied or shared weights (a weight used twice a step, as in this "
            "model); use grad_sample_mode='bk' (book-keeping; 'auto' picks it), which sums such a weight's "
            "per-example gradients before clipping"
        ) from err
