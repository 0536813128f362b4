"""A plugin whose dependency is missing: privaudit must list it as broken and fail only the runs that select it."""

import privaudit_demo_missing_dependency  # noqa: F401

from privaudit.canary.attack import ExtractionAttack


class BrokenExtraction(ExtractionAttack):
    name = "broken-extraction"
    description = "Never imports"
    requires = frozenset({"scores"})

    def extract(self, target, canaries, context):
        return []
