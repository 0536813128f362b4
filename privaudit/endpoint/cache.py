"""The response cache: what an endpoint already answered, on disk, so a killed audit resumes without asking again.

One JSONL file per endpoint and format (named by a hash of both), one line per text::

    {"key": "<sha256 of endpoint, format and text>", "label": "...", "scores": {"label": p, ...}, "sha256": "..."}

Texts themselves are not stored, only their hashes; headers never are (answers pass the client's scrubber,
:mod:`privaudit.endpoint.scrub`, before they are kept). Each line carries the SHA-256 of its own content, verified
when the cache is read, with its probabilities: finite, in [0, 1], summing to at most 1. A file with a line that
fails (flipped bytes, zeroed bytes, a NaN or a 7.5 written by another tool) is moved aside with one warning line naming
it, the good lines are kept in a fresh file, and the damaged answers are asked for again. Each batch is appended and flushed to the
operating system as it arrives, so a killed audit loses only the batches in flight; each is then ``fsync``ed to the
disk by a background thread (the next requests need not wait for the disk), and :meth:`ResponseCache.close` waits for
the last one. A torn last line (no newline: a killed run) is skipped on reading, without a warning.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from privaudit.endpoint.formats import SUM_TOLERANCE, Prediction
from privaudit.errors import PrivauditError
from privaudit.integrity import move_aside

DEFAULT_CACHE = Path(".cache") / "privaudit" / "endpoint"


def text_key(endpoint: str, fmt: str, text: str) -> str:
    """SHA-256 of the endpoint, the format and the text: the cache key of one answer."""
    digest = hashlib.sha256(json.dumps([endpoint, fmt]).encode("utf-8") + b"\n")
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()


def _content_hash(key: str, prediction: Prediction) -> str:
    return hashlib.sha256(json.dumps([key, prediction.label, prediction.scores], sort_keys=True).encode()).hexdigest()


def record_line(key: str, prediction: Prediction) -> str:
    """One cache line: the answer and the SHA-256 of its content."""
    return json.dumps({"key": key, **prediction.to_json(), "sha256": _content_hash(key, prediction)}) + "\n"


def read_line(line: bytes) -> tuple[str, Prediction]:
    """Read and verify one cache line.

    Raises:
        ValueError: what is wrong with it (not UTF-8 or JSON, a missing field, a content hash that does not match,
            a probability that is NaN or outside [0, 1], probabilities summing above 1).
    """
    try:
        record = json.loads(line.decode("utf-8"))
        key, prediction = str(record["key"]), Prediction.from_json(record)
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 at byte {err.start}") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValueError("not a cache record") from None
    if "sha256" in record and record["sha256"] != _content_hash(key, prediction):  # lines of older privaudits lack it
        raise ValueError("its content does not match its SHA-256")
    values = list(prediction.scores.values())
    if not all(math.isfinite(v) and -1e-6 <= v <= 1 + 1e-6 for v in values):
        raise ValueError("a probability that is NaN, infinite or outside [0, 1]")
    if math.fsum(values) > 1 + SUM_TOLERANCE:
        raise ValueError(f"probabilities summing to {math.fsum(values):.6g}, above 1")
    return key, prediction


class ResponseCache:
    """Answers of one endpoint, read from and appended to one JSONL file.

    Args:
        directory: where the cache files live, or ``None`` to cache in memory only.
        endpoint: the endpoint URL.
        fmt: its wire format.
        scrub: applied to every answer read from the file (:meth:`privaudit.endpoint.scrub.Scrubber.prediction`), so
            that a class name an older privaudit cached unscrubbed reaches no message or report.
    """

    def __init__(
        self,
        directory: Path | None,
        *,
        endpoint: str,
        fmt: str,
        scrub: Callable[[Prediction], Prediction] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.fmt = fmt
        name = hashlib.sha256(f"{endpoint}\n{fmt}".encode()).hexdigest()[:16]
        self.path = None if directory is None else Path(directory) / f"{name}.jsonl"
        self._answers: dict[str, Prediction] = {}
        self._scrub = scrub
        self._prefix = hashlib.sha256(json.dumps([endpoint, fmt]).encode("utf-8") + b"\n")
        self._keys: dict[str, str] = {}  # text -> key, computed once
        self._handle = None  # the file, opened for appending on the first answer kept
        self._syncer: ThreadPoolExecutor | None = None  # one thread that fsyncs, while the file is open
        self._synced: Future | None = None  # the last fsync asked for
        if self.path is not None and self.path.is_file():
            self._read()

    def _read(self) -> None:
        try:
            raw = self.path.read_bytes()
        except OSError as err:
            raise PrivauditError(f"{self.path}: cannot read the endpoint cache ({err.strerror})") from err
        lines = raw.split(b"\n")
        if lines and not raw.endswith(b"\n"):
            lines.pop()  # a torn last line from a killed run (or an empty file): expected, asked again quietly
        damaged: list[str] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                key, prediction = read_line(line)
            except ValueError as err:
                damaged.append(f"line {number}: {err}")
                continue
            self._answers[key] = prediction if self._scrub is None else self._scrub(prediction)
        if damaged:
            self._heal(damaged)

    def _heal(self, damaged: list[str]) -> None:
        """Move the damaged file aside (one warning line) and keep its good answers in a fresh one."""
        more = f" and {len(damaged) - 1} more" if len(damaged) > 1 else ""
        aside = move_aside(
            self.path, f"{damaged[0]}{more}", what="endpoint cache", then="asking the endpoint again for those texts"
        )
        if aside is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            tmp.write_text("".join(record_line(k, p) for k, p in self._answers.items()), encoding="utf-8")
            tmp.replace(self.path)
        except OSError as err:
            raise PrivauditError(f"{self.path}: cannot write the endpoint cache ({err.strerror})") from err

    def key(self, text: str) -> str:
        """The text's cache key (:func:`text_key`), memoised."""
        key = self._keys.get(text)
        if key is None:
            digest = self._prefix.copy()
            digest.update(text.encode("utf-8"))
            key = self._keys[text] = digest.hexdigest()
        return key

    def get(self, text: str) -> Prediction | None:
        return self._answers.get(self.key(text))

    def __len__(self) -> int:
        return len(self._answers)

    def missing(self, texts: list[str]) -> list[str]:
        """The distinct texts not in the cache, in first-seen order."""
        return [t for t in dict.fromkeys(texts) if self.key(t) not in self._answers]

    def add(self, texts: list[str], predictions: list[Prediction]) -> None:
        """Keep a batch's answers: appended to the file and flushed before returning, ``fsync``ed in the background."""
        lines = []
        for text, prediction in zip(texts, predictions):
            key = self.key(text)
            self._answers[key] = prediction
            lines.append(record_line(key, prediction))
        if self.path is None:
            return
        try:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                torn = self._torn()
                self._handle = self.path.open("a", encoding="utf-8")
                self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="privaudit-cache-fsync")
                if torn:  # a torn line left by a killed run would swallow the next record: start on a fresh line
                    self._handle.write("\n")
            self._handle.write("".join(lines))
            self._handle.flush()
        except OSError as err:
            raise PrivauditError(f"{self.path}: cannot write the endpoint cache ({err.strerror})") from err

        self._synced = self._syncer.submit(os.fsync, self._handle.fileno())

    def close(self) -> None:
        """Wait for the last ``fsync`` and close the file: every answer added is then on disk.

        Raises:
            PrivauditError: the disk refused the file.
        """
        if self._handle is None:
            return
        try:
            if self._synced is not None:
                self._synced.result()
        except OSError as err:
            raise PrivauditError(f"{self.path}: cannot write the endpoint cache ({err.strerror})") from err
        finally:
            self._syncer.shutdown(wait=True)
            self._handle.close()
            self._handle, self._syncer, self._synced = None, None, None

    def _torn(self) -> bool:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return False
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
