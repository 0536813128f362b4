"""Hooks into DP training that privaudit does not run: the user's own loop keeps its optimizer, sampler and data, and
privaudit adds and records its canaries inside it (``privaudit.integrations.opacus`` for Opacus)."""
