"""privaudit: measure how much a text classifier leaks its training data."""

__version__ = "0.1.0"
