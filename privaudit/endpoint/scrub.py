"""The one scrubber between an endpoint's texts and everything privaudit writes: messages, the cache, reports.

Header values (``--header NAME=@ENVVAR``: tokens, API keys) are secrets. A server may echo them: in an error body, in a
200 body that is not the format's, even as a class name. Every text that came from a server passes through
:class:`Scrubber` before it is quoted, raised, cached or reported, and it is scrubbed *before* it is cut to a quote's
length, so a secret that straddles the cut is removed whole rather than cut in two with one half left.

Besides the whole value, any piece of it of at least :data:`MIN_PIECE` characters is removed: a server that truncates
or splits what it echoes still leaks an identifying piece of a token. (Hand-written: no well-kept library scrubs
arbitrary substrings of a known secret; log scrubbers match token *shapes*, which a custom header need not have.)
"""

from __future__ import annotations

from collections.abc import Iterable

from privaudit.endpoint.formats import Prediction, quote

MASK = "***"
MIN_PIECE = 8  # characters of a secret that identify it: 8 random characters are ~48 bits


class Scrubber:
    """Removes every header value, and every piece of one of at least :data:`MIN_PIECE` characters, from texts.

    Args:
        secrets: the header values (empty ones are ignored).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        # Every MIN_PIECE-long window of every secret: a match of any window marks a piece of that secret.
        self._windows = {s[i : i + MIN_PIECE] for s in self._secrets for i in range(len(s) - MIN_PIECE + 1)}
        self._names: dict[str, str] = {}  # class names scrubbed so far: the same few recur in every answer

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        """``text`` with every secret, and every piece of one of ``MIN_PIECE`` characters or more, as ``***``."""
        if not self._secrets or not text:
            return text
        for secret in self._secrets:  # the whole value first (short secrets have no windows)
            text = text.replace(secret, MASK)
        if not self._windows:
            return text
        covered = bytearray(len(text))
        for window in self._windows:
            start = text.find(window)
            while start != -1:
                covered[start : start + MIN_PIECE] = b"\x01" * MIN_PIECE
                start = text.find(window, start + 1)
        if not any(covered):
            return text
        out, i = [], 0
        while i < len(text):
            if covered[i]:
                while i < len(text) and covered[i]:
                    i += 1
                out.append(MASK)
            else:
                out.append(text[i])
                i += 1
        return "".join(out)

    def quote(self, body: str | bytes) -> str:
        """At most ``QUOTE_CHARS`` characters of a server's text, on one line, scrubbed before it is cut."""
        return quote(body, self)

    def prediction(self, prediction: Prediction) -> Prediction:
        """The answer with its class names scrubbed: a server may answer a secret as a label."""
        if not self._secrets:
            return prediction
        return Prediction(
            label=self._name(prediction.label),
            scores={self._name(name): score for name, score in prediction.scores.items()},
        )

    def _name(self, name: str) -> str:
        scrubbed = self._names.get(name)
        if scrubbed is None:
            scrubbed = self._names[name] = self(name)
        return scrubbed
