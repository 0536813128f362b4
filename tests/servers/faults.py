"""Fault injection and request counting shared by the test servers, configured by environment variables.

- ``FAIL_FIRST=N``: answer 503 to the first N inference requests;
- ``SLOW_ONCE=SECONDS``: sleep that long in the first request not failed (past the client's timeout);
- ``REQUIRE_HEADER=NAME`` with ``REQUIRE_VALUE_ENV=VAR``: answer 401 unless header NAME equals the value of VAR;
- ``GARBLE=1``: answer 200 with a body that is not the format's;
- ``DELAY=SECONDS``: sleep that long in every request (so a test can kill the server mid-audit).

``/stats`` answers ``{"requests": R, "texts": {text: times asked}, "injected": {"503": A, "slow": B}}``: requests and
texts are counted over the requests inferred; ``injected`` counts the faults served.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter


class Faults:
    def __init__(self) -> None:
        self.fail_first = int(os.environ.get("FAIL_FIRST", "0"))
        self.slow_once = float(os.environ.get("SLOW_ONCE", "0"))
        self.header = os.environ.get("REQUIRE_HEADER")
        self.value = os.environ.get(os.environ.get("REQUIRE_VALUE_ENV", ""), "")
        self.garble = os.environ.get("GARBLE") == "1"
        self.delay = float(os.environ.get("DELAY", "0"))
        self.seen = 0
        self.requests = 0
        self.texts: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.lock = threading.Lock()

    def before(self, headers) -> int | None:
        """The status to answer instead of inferring (503, 401), or ``None``; sleeps once when asked to."""
        with self.lock:
            self.seen += 1
            if self.seen <= self.fail_first:
                self.injected["503"] += 1
                return 503
            slow, self.slow_once = self.slow_once, 0.0
            if slow:
                self.injected["slow"] += 1
        if self.header is not None and headers.get(self.header.lower(), headers.get(self.header)) != self.value:
            return 401
        if slow or self.delay:
            time.sleep(slow + self.delay)
        return None

    def count(self, texts) -> None:
        with self.lock:
            self.requests += 1
            self.texts.update(texts)

    def stats(self) -> dict:
        with self.lock:
            return {"requests": self.requests, "texts": dict(self.texts), "injected": dict(self.injected)}
