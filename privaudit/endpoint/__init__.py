"""Audits of classifiers behind an HTTP endpoint: wire formats, the HTTP client, the response cache, the remote target.

Below both ``mia`` and ``canary``, beside the ground floor: it imports only ``privaudit.errors`` and
``privaudit.integrity``.
"""
