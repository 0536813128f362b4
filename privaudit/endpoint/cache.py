"""The response cache: what an endpoint already answered, on disk, so a killed audit resumes without asking again.

One JSONL file per endpoint and format (named by a hash of both), one line per text::

    {"key": "<sha256 of endpoint, format and text>", "label": "...", "scores": {"label": p, ...}}

Texts themselves are not stored, only their hashes; headers never are. Each batch is appended and flushed to the
operating system as it arrives, so a killed audit loses only the batches in flight; each is then ``fsync``ed to the
disk by a background thread (the next requests need not wait for the disk), and :meth:`ResponseCache.close` waits for
the last one. A torn last line, or any line that does not parse, is skipped on reading.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from privaudit.endpoint.formats import Prediction
from privaudit.errors import PrivauditError

DEFAULT_CACHE = Path(".cache") / "privaudit" / "endpoint"


def text_key(endpoint: str, fmt: str, text: str) -> str:
    """SHA-256 of the endpoint, the format and the text: the cache key of one answer."""
    digest = hashlib.sha256(json.dumps([endpoint, fmt]).encode("utf-8") + b"\n")
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()


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
        self._prefix = hashlib.sha256(json.dumps([endpoint, fmt]).encode("utf-8") + b"\n")
        self._keys: dict[str, str] = {}  # text -> key, computed once
        self._handle = None  # the file, opened for appending on the first answer kept
        self._syncer: ThreadPoolExecutor | None = None  # one thread that fsyncs, while the file is open
        self._synced: Future | None = None  # the last fsync asked for
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
            lines.append(json.dumps({"key": key, **prediction.to_json()}) + "\n")
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
