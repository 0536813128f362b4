"""A third-party canary-extraction plugin for privaudit, used by its tests."""
