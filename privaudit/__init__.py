"""privaudit: measure how much a text classifier leaks its training data.

From Python, four keyword-only functions mirror the commands (see ``docs/python-api.md``)::

    import privaudit

    privaudit.train(data, out=...)                                       # privaudit train
    privaudit.epsilon(noise_multiplier=..., sample_rate=..., steps=..., delta=...)   # privaudit epsilon
    privaudit.audit_membership(model_dir, members=..., non_members=...)  # privaudit mia
    privaudit.audit_canaries(model_dir, canaries=...)                    # privaudit canary

They are loaded on first use, so ``import privaudit`` stays cheap and does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from privaudit.errors import PrivauditError

__version__ = "0.1.0"

__all__ = ["PrivauditError", "__version__", "audit_canaries", "audit_membership", "epsilon", "train"]
_FRONT_DOOR = ("audit_canaries", "audit_membership", "epsilon", "train")

if TYPE_CHECKING:
    from privaudit.api import audit_canaries, audit_membership, epsilon, train


def __getattr__(name: str) -> Any:
    # PEP 562. By name through importlib: every module of the package imports this one (for __version__), so a
    # written import of privaudit.api here would read as an import circle, where it is only a load on first use.
    if name in _FRONT_DOOR:
        value = getattr(importlib.import_module("privaudit.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'privaudit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_FRONT_DOOR})
