"""The response cache: what an endpoint already answered, on disk, so a killed audit resumes without asking again.

One JSONL file per endpoint and format (named by a hash of both), one line per text::

    {"key": "<sha256 of endpoint, format and text>", "label": "...", "scores": {"label": p, ...}}

Texts themselves are not stored, only their hashes; headers never are. Each batch is appended and flushed to disk
(``fsync``) before the next is asked for, so a kill loses at most the batch in flight; a torn last line, or any line
that does not parse, is skipped on reading.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from privaudit.endpoint.formats import Prediction
from privaudit.errors import PrivauditError

DEFAULT_CACHE = Path(".cache") / "privaudit" / "endpoint"


def text_key(endpoint: str, fmt: str, text: str) -> str:
    """SHA-256 of the endpoint, the format and the text: the cache key of one answer."""
    return hashlib.sha256(json.dumps([endpoint, fmt, text]).encode("utf-8")).hexdigest()


class ResponseCache:
    """Answers of one endpoint, read from and appended to one JSONL file.

    Args:
        directory: where the cache files live, or ``None`` to cache in memory only.
        endpoint: the endpoint URL.
        fmt: its wire format.
    """

    def __init__(self, directory: Path | None, *, endpoint: str, fmt: str) -> None:
        self.endpoint = endpoint
        self.fmt = fmt
        name = hashlib.sha256(f"{endpoint}\n{fmt}".encode()).hexdigest()[:16]
        self.path = None if directory is None else Path(directory) / f"{name}.jsonl"
        self._answers: dict[str, Prediction] = {}
        if self.path is not None and self.path.is_file():
            self._read()

    def _read(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as err:
            raise PrivauditError(f"{self.path}: cannot read the endpoint cache ({err.strerror})") from err
        for line in lines:
            try:
                record = json.loads(line)
                self._answers[record["key"]] = Prediction.from_json(record)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a torn last line from a killed run, or damage: ask again

    def key(self, text: str) -> str:
        return text_key(self.endpoint, self.fmt, text)

    def get(self, text: str) -> Prediction | None:
        return self._answers.get(self.key(text))

    def __len__(self) -> int:
        return len(self._answers)

    def missing(self, texts: list[str]) -> list[str]:
        """The distinct texts not in the cache, in first-seen order."""
        return [t for t in dict.fromkeys(texts) if self.key(t) not in self._answers]

    def add(self, texts: list[str], predictions: list[Prediction]) -> None:
        """Keep a batch's answers, appending them to the file and flushing it to disk before returning."""
        lines = []
        for text, prediction in zip(texts, predictions):
            key = self.key(text)
            self._answers[key] = prediction
            lines.append(json.dumps({"key": key, **prediction.to_json()}) + "\n")
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                # A torn line left by a killed run would swallow the next record: start on a fresh line.
                if handle.tell() > 0 and not self._ends_with_newline():
                    handle.write("\n")
                handle.write("".join(lines))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as err:
            raise PrivauditError(f"{self.path}: cannot write the endpoint cache ({err.strerror})") from err

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"
