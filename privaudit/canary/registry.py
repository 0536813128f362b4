"""Canary-extraction attack registry: the built-ins ``exposure`` and ``modiva``, plus plugins from entry points.

The same machinery as the membership attacks (:class:`privaudit.plugins.Registry`), under its own entry-point
group::

    [project.entry-points."privaudit.extraction_attacks"]
    my-extraction = "my_package.my_module:MyExtraction"

A built-in lives in its own file under ``attacks/`` and is listed in ``privaudit.attacks.BUILTINS``; plugins are
imported only when selected or listed.
"""

from __future__ import annotations

from privaudit.canary.attack import TARGET_ACCESS, ExtractionAttack
from privaudit.plugins import Registry

ENTRY_POINT_GROUP = "privaudit.extraction_attacks"

EXTRACTION = Registry(
    kind="extraction",
    base=ExtractionAttack,
    requirements=TARGET_ACCESS,
    group=ENTRY_POINT_GROUP,
    noun="extraction attack",
)

__all__ = ["ENTRY_POINT_GROUP", "EXTRACTION"]
