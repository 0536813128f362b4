"""The HTTP side of a remote target: batches, bounded concurrency, timeouts, retries with backoff, secret headers.

Batches go out on a thread pool sharing one ``httpx.Client`` (its connection pool is thread-safe), at most
``concurrency`` at a time. A batch is retried with exponential backoff on 429, on 5xx and on connection errors and
timeouts; any other status, or an answer that is not the format's, ends the audit. Header values are secrets: they are
sent, and scrubbed from every message that could carry them (httpx's exception texts included); they never reach a
log, a report or the cache.
"""

from __future__ import annotations

import functools
import os
import re
import ssl
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from privaudit.endpoint.formats import Prediction, check_format, infer_url, parse_response, request_body
from privaudit.endpoint.scrub import Scrubber
from privaudit.errors import PrivauditError

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_WARNED: set[str] = set()  # endpoints already warned about --insecure in this process
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The verifying TLS context (the system's and certifi's roots, as httpx builds it), built once a process: it takes
    tens of milliseconds, and an audit may open several clients."""
    import httpx

    return httpx.create_ssl_context(verify=True)


def parse_header(spec: str, *, environ: dict[str, str] | None = None) -> tuple[str, str]:
    """Read ``NAME=@ENVVAR``: the header's value comes from the environment variable, never the command line.

    Raises:
        PrivauditError: a malformed spec, a literal value (it would sit in shell history and ``ps``), or an unset
            variable. The message never holds the value.
    """
    environ = os.environ if environ is None else environ
    name, equals, source = spec.partition("=")
    name = name.strip()
    if not equals or not _HEADER_NAME.match(name):
        raise PrivauditError("--header: expected NAME=@ENVVAR, e.g. Authorization=@HF_TOKEN")
    if not source.startswith("@") or len(source) < 2:
        raise PrivauditError(
            f"--header {name}: give the value as @ENVVAR (read from that environment variable); a literal value "
            "would be visible in shell history and the process list, so it is refused"
        )
    variable = source[1:]
    if variable not in environ or not environ[variable]:
        raise PrivauditError(f"--header {name}=@{variable}: the environment variable {variable} is not set")
    value = environ[variable]
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise PrivauditError(f"--header {name}=@{variable}: the value holds a control character (a newline?)")
    return name, value


@dataclass(frozen=True)
class EndpointConfig:
    """How to reach an endpoint.

    Attributes:
        url: ``--endpoint``; for ``v2`` the model's URL up to its name.
        fmt: ``--endpoint-format``, ``"v2"`` or ``"hf"``.
        headers: header name to value, secrets all (kept out of ``repr``).
        batch_size: texts per request.
        concurrency: requests in flight at most.
        timeout: seconds per request (connect, read, write and pool alike).
        retries: further tries of a batch after a retryable failure.
        backoff: seconds before the first retry, doubled each time (at most 30 s).
        verify: verify TLS certificates (``--insecure`` turns it off).
        max_queries: texts that may be asked for at most (cached ones are free), or ``None``.
        label_names: class names of a ``v2`` probability tensor, in column order, when the server does not say.
    """

    url: str
    fmt: str = "v2"
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    batch_size: int = 32
    concurrency: int = 4
    timeout: float = 30.0
    retries: int = 5
    backoff: float = 0.25
    verify: bool = True
    max_queries: int | None = None
    label_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_format(self.fmt)
        if not self.url.startswith(("http://", "https://")):
            raise PrivauditError(f"--endpoint {self.url}: expected an http:// or https:// URL")

    def describe(self) -> dict:
        """What a report may say about the endpoint: its URL and format, never its headers."""
        return {"endpoint": self.url, "endpoint_format": self.fmt}


class EndpointClient:
    """Sends batches of texts to one endpoint and reads the answers.

    Args:
        config: the endpoint.
        sleep: the pause between retries (a test may shorten it).
    """

    def __init__(self, config: EndpointConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        import httpx

        self.config = config
        self.url = infer_url(config.url, config.fmt)
        self._sleep = sleep
        self._scrubber = Scrubber(config.headers.values())
        if not config.verify and config.url not in _WARNED:
            _WARNED.add(config.url)
            print(
                f"WARNING: --insecure: TLS certificates of {config.url} are NOT verified; anyone on the network path "
                "can impersonate the endpoint, read the audited texts and any auth header sent with them",
                file=sys.stderr,
            )
        self._http = httpx.Client(
            headers={"Content-Type": "application/json", **config.headers},
            timeout=config.timeout,
            verify=_tls_context() if config.verify else False,
            limits=httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EndpointClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scrub(self, text: str) -> str:
        """``text`` with every header value, and every identifying piece of one, replaced by ``***``."""
        return self._scrubber(text)

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        """One request, retried on 429, 5xx, timeouts and connection errors with exponential backoff.

        Raises:
            PrivauditError: retries spent, another HTTP status, or an answer not in the format.
        """
        import httpx

        body = request_body(self.config.fmt, texts)
        delay = self.config.backoff
        for attempt in range(self.config.retries + 1):
            try:
                response = self._http.post(self.url, json=body)
            except httpx.TransportError as err:  # connection refused or reset, timeouts
                problem = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}"
            except Exception as err:  # httpx's other errors (a bad URL, ...): their text may carry a header
                detail = str(err).splitlines()[0] if str(err) else "no detail"
                raise PrivauditError(
                    self.scrub(f"cannot send to {self.config.url}: {type(err).__name__}: {detail}")
                ) from None
            else:
                if response.status_code == 200:
                    predictions = parse_response(
                        self.config.fmt,
                        response.content,
                        n=len(texts),
                        label_names=self.config.label_names,
                        scrub=self._scrubber,
                    )
                    # Class names are server text too: scrubbed before they are cached, reported or quoted.
                    return [self._scrubber.prediction(p) for p in predictions]
                problem = f"HTTP {response.status_code}: {self._scrubber.quote(response.content)!r}"
                if response.status_code not in RETRY_STATUS:
                    raise PrivauditError(self.scrub(f"the endpoint {self.config.url} refused a batch ({problem})"))
            if attempt < self.config.retries:
                self._sleep(min(delay, 30.0))
                delay *= 2
        raise PrivauditError(
            self.scrub(
                f"the endpoint {self.config.url} did not answer after {self.config.retries + 1} tries ({problem}); "
                "answers so far are cached: rerun to ask only for the rest"
            )
        )

    def predict(self, batches: Sequence[Sequence[str]]) -> Iterator[tuple[int, list[Prediction]]]:
        """Ask for every batch, ``concurrency`` at a time; yields ``(batch index, predictions)`` as each completes.

        Raises:
            PrivauditError: from the first batch that fails; batches not yet sent are not sent.
        """
        if not batches:
            return
        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            pending: dict[Future, int] = {}
            queue = iter(enumerate(batches))
            for i, batch in queue:
                pending[pool.submit(self.predict_batch, batch)] = i
                if len(pending) >= self.config.concurrency:
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                failed = [f for f in done if f.exception() is not None]
                finished = sorted(set(done) - set(failed), key=pending.__getitem__)
                results = [(pending.pop(future), future.result()) for future in finished]
                if not failed:
                    # Refill before handing results back: the caller's cache write overlaps the next requests.
                    for _ in finished:
                        nxt = next(queue, None)
                        if nxt is not None:
                            pending[pool.submit(self.predict_batch, nxt[1])] = nxt[0]
                # Hand back every batch that did complete (so it is cached) before giving up on a failed one.
                yield from results
                if failed:
                    for other in pending:
                        other.cancel()
                    raise failed[0].exception()


def endpoint_config(
    *,
    endpoint: str | None,
    endpoint_format: str,
    endpoint_labels: str | None,
    endpoint_batch: int,
    concurrency: int,
    endpoint_timeout: float,
    endpoint_retries: int,
    max_queries: int | None,
    header: list[str] | None,
    insecure: bool,
):
    """The :class:`~privaudit.endpoint.client.EndpointConfig` the flags describe, or ``None`` without ``--endpoint``.

    Raises:
        PrivauditError: an endpoint flag without ``--endpoint``, or a bad header or URL.
    """
    if endpoint is None:
        if header or insecure or max_queries is not None or endpoint_labels:
            raise PrivauditError("--header, --insecure, --max-queries and --endpoint-labels need --endpoint URL")
        return None
    headers = dict(parse_header(spec) for spec in header or ())
    labels = None
    if endpoint_labels:
        labels = tuple(name.strip() for name in endpoint_labels.split(",") if name.strip())
    return EndpointConfig(
        url=endpoint,
        fmt=endpoint_format,
        headers=headers,
        batch_size=endpoint_batch,
        concurrency=concurrency,
        timeout=endpoint_timeout,
        retries=endpoint_retries,
        verify=not insecure,
        max_queries=max_queries,
        label_names=labels,
    )


# The keyword names of endpoint_config: the Endpoint flags of mia and canary, and the front door's keywords alike.
ENDPOINT_FLAGS = (
    "endpoint",
    "endpoint_format",
    "endpoint_labels",
    "endpoint_batch",
    "concurrency",
    "endpoint_timeout",
    "endpoint_retries",
    "max_queries",
    "header",
    "insecure",
)


def endpoint_from_flags(values: Mapping[str, Any]) -> EndpointConfig | None:
    """:func:`endpoint_config` of the endpoint flags found by name in ``values`` (a command's ``ctx.params``).

    Raises:
        PrivauditError: as :func:`endpoint_config`.
    """
    flags = {name: values[name] for name in ENDPOINT_FLAGS}
    flags["header"] = list(flags["header"] or ())
    return endpoint_config(**flags)
