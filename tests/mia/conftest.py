"""The fixture audit of the per-example and slice tests, run once per distinct request for the whole session."""

from __future__ import annotations

import dataclasses

import pytest

import privaudit.mia.run
from privaudit.mia.run import MiaRequest, MiaResult

_AUDITS: dict[MiaRequest, MiaResult] = {}


@pytest.fixture
def memoised_audit(monkeypatch):
    """``run_mia`` for real once per distinct request (paths resolved); the command's flags still run each time."""
    real = privaudit.mia.run.run_mia

    def run(request, *, progress=None):
        key = dataclasses.replace(
            request,
            **{
                f: getattr(request, f).resolve() for f in ("model_dir", "members", "non_members") if getattr(request, f)
            },
        )
        if key not in _AUDITS:
            _AUDITS[key] = real(request, progress=progress)
        return _AUDITS[key]

    monkeypatch.setattr(privaudit.mia.run, "run_mia", run)
    return _AUDITS
