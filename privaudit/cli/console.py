"""The bottom of the command line: the error console, the progress bar every long step uses, and atomic writes.

Nothing here imports anything else of ``privaudit.cli``, so every command module may import it.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from privaudit.errors import PrivauditError

err_console = Console(stderr=True)


class _LazyProgress(Progress):
    """A progress display that appears with its first task: a run that fails its checks shows only its error, and so
    does one that fails before any task advanced (its bars at 0 are erased, not left above the error)."""

    def __enter__(self) -> _LazyProgress:
        return self

    def __exit__(self, kind, *_exc_info) -> None:
        # Never started (the run failed before its first stage): stopping would still print an empty line.
        if self.live.is_started:
            if kind is not None and all(task.completed == 0 for task in self.tasks):
                self.live.transient = True
            self.stop()

    def add_task(self, *args, **kwargs):
        if not self.live.is_started:
            self.start()
        return super().add_task(*args, **kwargs)


def progress_bar(console: Console | None = None) -> Progress:
    """The Rich progress bar every long step uses (on stderr, so stdout stays machine-readable)."""
    return _LazyProgress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or err_console,
        transient=False,
    )


def write_text(text: str, output: Path | None) -> None:
    """Write to a file atomically, or to stdout.

    Raises:
        PrivauditError: when the file cannot be written (so the run exits 2, never 0 without its report).
    """
    if output is None:
        sys.stdout.write(text)
        return
    tmp = output.with_name(output.name + ".tmp")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(output)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise PrivauditError(f"{output}: cannot write the report ({err.strerror or err})") from err
