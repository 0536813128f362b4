"""What the Python front door accepts, turned into what the library's requests take.

Paths may be ``str`` or any ``os.PathLike``; data sets may also be records in memory (a list of ``{"text", "label"}``
dicts, or a ``pandas.DataFrame`` with those columns), read by :func:`privaudit.data.dataset_from_records` and named
after their keyword in messages (``<members>``). The command line checks its ranges with click; the same ranges are
checked here, so a bad value fails before any work starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from privaudit.data import TextDataset, dataset_from_records
from privaudit.errors import PrivauditError

if TYPE_CHECKING:
    import pandas

PathLike = str | os.PathLike[str]
# A file, or records in memory: an iterable of {"text", "label"} mappings, or a pandas DataFrame with those columns
# (a forward reference, hence Union: pandas is imported only by whoever passes a data frame).
Data = Union[PathLike, Iterable[Mapping[str, Any]], "pandas.DataFrame"]
# progress(stage, done, total): total is None while unknown.
Progress = Callable[[str, int, int | None], None]


def as_path(value: PathLike | None, *, name: str, required: bool = False) -> Path | None:
    """``value`` as a :class:`~pathlib.Path`; ``None`` stays ``None``, unless the argument is ``required``."""
    if value is None:
        if required:
            raise PrivauditError(f"{name}: a path is required")
        return None
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise PrivauditError(f"{name}: expected a path (str or Path), not {type(value).__name__}")


def as_paths(values: PathLike | Sequence[PathLike] | None, *, name: str) -> tuple[Path, ...]:
    """One path or several, as a tuple of paths (a repeatable flag's values)."""
    if values is None:
        return ()
    if isinstance(values, (str, os.PathLike)):
        values = [values]
    return tuple(as_path(v, name=name) for v in values)  # type: ignore[misc]


def as_data(value: Data | None, *, name: str, group_by: str | None = None) -> Path | TextDataset | None:
    """A data file's path, or the records given in memory, read and checked as a file's would be.

    ``group_by`` names the field that holds each record's owner (``--group-by``), read with the records.
    """
    if value is None or isinstance(value, TextDataset):
        return value
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    return dataset_from_records(value, name=f"<{name}>", group_by=group_by)


def attack_spec(attacks: str | Sequence[str] | None) -> str | None:
    """``--attack``'s value: a comma-separated string, ``"all"``, or names in a list or tuple."""
    if attacks is None or isinstance(attacks, str):
        return attacks
    names = list(attacks)
    if not all(isinstance(n, str) for n in names):
        raise PrivauditError("attacks: expected attack names (str), a comma-separated string, or 'all'")
    return ",".join(names)


def attack_option_specs(options: Mapping[str, Mapping[str, Any]] | Sequence[str] | None) -> tuple[str, ...]:
    """``--attack-option``'s values: ``ATTACK:PARAM=VALUE`` strings, or ``{attack: {param: value}}``."""
    if options is None:
        return ()
    if isinstance(options, str):
        return (options,)
    if isinstance(options, Mapping):
        specs = []
        for attack, params in options.items():
            if not isinstance(params, Mapping):
                raise PrivauditError(f"attack_options['{attack}']: expected a dict of parameters, e.g. {{'a': 0.3}}")
            specs += [f"{attack}:{param}={_option_text(value)}" for param, value in params.items()]
        return tuple(specs)
    return tuple(options)


def _option_text(value: Any) -> str:
    # Read back by privaudit.mia.registry.parse_attack_options: none, true/false, a number, or text.
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_ranges(**values: tuple[float | None, float]) -> None:
    """``name=(value, minimum)``: the ``min=`` of each flag, which click checks on the command line.

    Raises:
        PrivauditError: naming the first value below its minimum.
    """
    for name, (value, minimum) in values.items():
        if value is not None and value < minimum:
            raise PrivauditError(f"{name}={value!r} is not in the range {name} >= {minimum}")


def stage_callback(progress: Progress | None) -> Progress | None:
    """The ``progress(stage, done, total)`` callback as given, checked to be callable."""
    if progress is not None and not callable(progress):
        raise PrivauditError("progress: expected a callable progress(stage, done, total)")
    return progress
