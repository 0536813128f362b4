"""The command line. Importing this package registers every command on the app.

``app.py`` holds the typer app and ``main``; ``console.py`` is the bottom (console, progress bar, atomic writes);
each command has its own module, imported here, in the order ``privaudit --help`` lists them, so that no module
imports its importer.
"""

# isort: off
from privaudit.cli import train, mia, baseline, canary, plant, dpaudit, sweep  # noqa: F401  (register the commands, in this order)

# isort: on
from privaudit.cli.app import app, main

__all__ = ["app", "main"]
