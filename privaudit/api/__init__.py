"""The Python front door: ``privaudit train``, ``epsilon``, ``mia`` and ``canary`` as keyword-only functions.

Each calls the same request and runner as its command, and returns the command's result as data; nothing is printed,
errors raise :class:`~privaudit.errors.PrivauditError` with the command's message, and long work reports through an
optional ``progress(stage, done, total)`` callback. ``import privaudit`` loads this package on first use only.
"""

from privaudit.api.audit import audit_canaries, audit_membership
from privaudit.api.results import CanaryAudit, MembershipAudit
from privaudit.api.train import epsilon, train
from privaudit.errors import PrivauditError

__all__ = [
    "CanaryAudit",
    "MembershipAudit",
    "PrivauditError",
    "audit_canaries",
    "audit_membership",
    "epsilon",
    "train",
]
