"""``privaudit sweep``: train one recipe at several epsilons and audit every point (``run.py``, ``audit.py``)."""
