"""The settings of the service's HTTP edges (API key, concurrency cap, timeouts) and the key check.

Read from the environment when the service module is imported (in the process that starts the
server and in every worker); a value that cannot be used stops ``bentoml serve`` at start-up:

- ``LOCALSOC_API_KEY``: when set, every route except the health probes (``OPEN_ROUTES``) needs
  ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; at least 16 printable ASCII
  characters without spaces, of at least 6 distinct characters (``openssl rand -hex 32``).
  Unset or empty: no key is asked for; set but blank (spaces only): refused, so that a key
  meant to be set never turns the check off.
- ``LOCALSOC_MAX_CONCURRENCY``: requests in flight per server (BentoML's
  ``traffic.max_concurrency``, shared out over the workers); one more is answered 429 at once.
  The health probes and ``/metrics`` are never capped. 0: no cap. Default 128: above
  ``bench/serve_load.py``'s 32 clients even when they all land on one worker (BentoML gives
  each worker ``ceil(cap / workers)``), yet a bound on the queue.
- ``LOCALSOC_REQUEST_TIMEOUT_S``: a request not answered within it, body included, gets
  BentoML's 504 (``traffic.timeout``). Default 60.
- ``LOCALSOC_BODY_TIMEOUT_S``: a body not received in full within it (from the end of the
  headers) gets a 408 and the connection is closed. Below the request timeout. Default 30.
- ``LOCALSOC_HEADER_TIMEOUT_S``: request headers not received in full within it (from the
  connection's opening, or from the first byte of a later request on a kept-alive connection)
  get a 408 and the connection is closed, so that a client sending a byte now and then holds
  no connection for long; uvicorn, which BentoML runs, has no such timeout of its own
  (``localsoc.serving.header_timeout`` adds it). Default 10.

A deployment that faces clients it does not trust still puts a reverse proxy in front for TLS
and per-client connection limits (nginx ``limit_conn``), see the README.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

#: Routes that answer without the API key: the health probes (an empty body, nothing served).
OPEN_ROUTES = frozenset({"/livez", "/readyz", "/healthz"})
DEFAULT_MAX_CONCURRENCY = 128
DEFAULT_REQUEST_TIMEOUT_S = 60.0
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_HEADER_TIMEOUT_S = 10.0
MIN_KEY_CHARS = 16
#: Fewest distinct characters of a key (a key of one repeated character is refused).
MIN_KEY_DISTINCT = 6


@dataclass(frozen=True)
class EdgeSettings:
    """How the service meets HTTP clients (see the module notes)."""

    api_key: str | None = None
    max_concurrency: int | None = DEFAULT_MAX_CONCURRENCY
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S

    def traffic(self) -> dict[str, float | int | None]:
        """BentoML's ``traffic`` service configuration."""
        return {"timeout": self.request_timeout_s, "max_concurrency": self.max_concurrency}


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number") from None


def api_key(text: str) -> str | None:
    """The API key set as ``text`` (surrounding whitespace dropped), None when ``text`` is empty;
    ``ValueError`` for a key that is set but weak: blank (a key of spaces would otherwise turn
    the key check off), shorter than ``MIN_KEY_CHARS``, not printable ASCII, with spaces, or of
    fewer than ``MIN_KEY_DISTINCT`` distinct characters (``aaaaaaaaaaaaaaaa``)."""
    if text == "":
        return None
    key = text.strip()
    advice = "e.g. `openssl rand -hex 32`; unset it (or set it empty) to serve without a key"
    if not key:
        raise ValueError(f"LOCALSOC_API_KEY is set but blank: {advice}")
    if (len(key) < MIN_KEY_CHARS or not key.isascii() or not key.isprintable()
            or " " in key):
        raise ValueError(f"LOCALSOC_API_KEY must be at least {MIN_KEY_CHARS} printable ASCII "
                         f"characters without spaces ({advice})")
    if len(set(key)) < MIN_KEY_DISTINCT:
        raise ValueError(f"LOCALSOC_API_KEY has only {len(set(key))} distinct character(s), "
                         f"too easy to guess; use at least {MIN_KEY_DISTINCT} ({advice})")
    return key


def edge_settings(environ: Mapping[str, str] | None = None) -> EdgeSettings:
    """The settings in ``environ`` (default ``os.environ``); ``ValueError`` names a bad one."""
    environ = os.environ if environ is None else environ
    key = api_key(environ.get("LOCALSOC_API_KEY", ""))
    cap = _number(environ, "LOCALSOC_MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY)
    if cap < 0 or cap != int(cap):
        raise ValueError(f"LOCALSOC_MAX_CONCURRENCY must be a whole number >= 0, not {cap:g}")
    request_s = _number(environ, "LOCALSOC_REQUEST_TIMEOUT_S", DEFAULT_REQUEST_TIMEOUT_S)
    body_s = _number(environ, "LOCALSOC_BODY_TIMEOUT_S", DEFAULT_BODY_TIMEOUT_S)
    if not 0 < body_s < request_s:
        raise ValueError(f"LOCALSOC_BODY_TIMEOUT_S ({body_s:g}) must be above 0 and below "
                         f"LOCALSOC_REQUEST_TIMEOUT_S ({request_s:g}), else slow bodies get "
                         "the request timeout's 504 instead of a 408")
    header_s = _number(environ, "LOCALSOC_HEADER_TIMEOUT_S", DEFAULT_HEADER_TIMEOUT_S)
    if not 0 < header_s < float("inf"):
        raise ValueError(f"LOCALSOC_HEADER_TIMEOUT_S ({header_s:g}) must be a number of "
                         "seconds above 0")
    return EdgeSettings(api_key=key, max_concurrency=int(cap) or None,
                        request_timeout_s=request_s, body_timeout_s=body_s,
                        header_timeout_s=header_s)


def offers_key(headers: Mapping[bytes, bytes], key: str) -> bool:
    """Whether the request headers (lower-case names, as ASGI gives them) hold ``key`` as
    ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; compared in constant time."""
    expected = key.encode()
    offered = [headers.get(b"x-api-key", b"")]
    scheme, _, token = headers.get(b"authorization", b"").strip().partition(b" ")
    if scheme.lower() == b"bearer":
        offered.append(token)
    # every candidate is compared, so the time does not tell which header was tried
    matches = [hmac.compare_digest(value.strip(), expected) for value in offered]
    return any(matches)
