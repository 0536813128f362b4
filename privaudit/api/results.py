"""The results the Python front door returns: the command's own result objects, with their text and HTML renderings.

:class:`MembershipAudit` is the :class:`~privaudit.mia.run.MiaResult` that ``privaudit mia`` reports, and
:class:`CanaryAudit` the :class:`~privaudit.canary.run.CanaryResult` of ``privaudit canary``: the same fields and the
same ``to_dict()``, plus what the command line renders from them (the Rich tables as plain text, the HTML report, the
JSON document). They live here, not beside the results, because rendering is ``privaudit.report``'s, a stage above.
"""

from __future__ import annotations

import io
from dataclasses import fields
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from privaudit.canary.run import CanaryResult
from privaudit.mia.run import MiaResult

SUMMARY_WIDTH = 120
_T = TypeVar("_T")


def adopt(cls: type[_T], result: Any) -> _T:
    """``result``'s fields in an instance of ``cls``, a subclass of its class that only adds methods."""
    return cls(**{f.name: getattr(result, f.name) for f in fields(result)})


def _plain_text(print_result: Any, result: Any, width: int) -> str:
    console = Console(file=io.StringIO(), record=True, width=width, color_system=None, force_terminal=False)
    print_result(result, console)
    return console.export_text()


def _json_text(result: Any, measurements: list) -> str:
    from privaudit.gate.gate import run_gate
    from privaudit.report.formats import to_json

    return to_json(result, run_gate(measurements, []))


class MembershipAudit(MiaResult):
    """A membership-inference audit: the ``MiaResult`` of ``privaudit mia``, with its renderings.

    Data first: ``attacks`` holds one :class:`~privaudit.mia.run.AttackResult` per attack (``name``, ``metrics``
    with ``auc``, ``tpr_at_fpr``, ``advantage``, ``epsilon_lower_bound``, and the per-example ``scores``), and
    ``is_member`` the ground truth, members first.
    """

    def summary(self, *, width: int = SUMMARY_WIDTH) -> str:
        """The table ``privaudit mia`` prints, as plain text (no colour), with its warning if a bound is exceeded.

        Args:
            width: the width to lay the table out in, in characters.
        """
        from privaudit.report.table import print_mia

        return _plain_text(print_mia, self, width)

    def write_html(self, path: str | PathLike[str]) -> None:
        """Write the self-contained HTML report of ``--report`` (ROC curves, score histograms), atomically.

        Raises:
            PrivauditError: the file cannot be written.
        """
        from privaudit.report.html import write_html

        write_html(self, Path(path))

    def to_json(self) -> str:
        """The text ``privaudit mia --format json`` writes: ``to_dict()`` plus the ``gate`` section (no thresholds)."""
        from privaudit.gate.measurements import mia_measurements

        return _json_text(self, mia_measurements(self))


class CanaryAudit(CanaryResult):
    """A canary audit: the ``CanaryResult`` of ``privaudit canary``, with its renderings.

    Data first: ``rows`` holds one :class:`~privaudit.canary.run.CanaryRow` per exposure canary (the canary, its
    ``loss``, ``exposure`` and ModIvA ``extraction``), ``one_run`` the one-run audit, if it ran.
    """

    def summary(self, *, width: int = SUMMARY_WIDTH) -> str:
        """The tables ``privaudit canary`` prints, as plain text (no colour).

        Args:
            width: the width to lay the tables out in, in characters.
        """
        from privaudit.report.canary_table import print_canary

        return _plain_text(print_canary, self, width)

    def write_html(self, path: str | PathLike[str]) -> None:
        """Write the self-contained HTML report of ``--report`` (candidate-loss plots), atomically.

        Raises:
            PrivauditError: the file cannot be written.
        """
        from privaudit.report.canary_html import write_canary_html

        write_canary_html(self, Path(path))

    def to_json(self) -> str:
        """The text ``privaudit canary --format json`` writes: ``to_dict()`` plus the ``gate`` section (no thresholds)."""
        from privaudit.gate.measurements import canary_measurements

        return _json_text(self, canary_measurements(self))
