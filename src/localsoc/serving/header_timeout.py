"""A header timeout for the HTTP server that BentoML runs (uvicorn, with its h11 protocol).

uvicorn times neither a connection that sends nothing nor request headers that arrive slowly
(its keep-alive timer starts only after a response, and stops at the next byte), and BentoML
passes no option that would add one. ``HeaderTimeoutProtocol`` is uvicorn's h11 protocol with
one timer more: started when a connection opens and when the first byte of a later request on
it arrives, stopped when h11 has read the request's headers in full. When it fires first, the
client gets a 408 ``{"error", "field": null}`` with ``Connection: close`` and the connection is
closed: at once for our side (the 408, then end-of-file), while what the client still sends is
read and dropped for ``linger_s`` more before the socket closes. Closing it at once would answer
those bytes with a TCP reset, which can make the client's system discard the 408 unread (a
"lingering close", as Apache httpd does; a test that dribbles its headers met exactly that).
Bodies are timed by the service's middleware (``LOCALSOC_BODY_TIMEOUT_S``).

``install(seconds)`` makes uvicorn build this protocol for ``http="auto"`` and ``"h11"`` (BentoML
passes neither, so "auto" is used); the service module calls it at import, in every worker,
before the worker creates its uvicorn server.
"""

from __future__ import annotations

import asyncio
import json

import h11
import uvicorn.config
from uvicorn.protocols.http.h11_impl import H11Protocol

#: The import string uvicorn resolves for the protocol (``uvicorn.config.HTTP_PROTOCOLS``).
PROTOCOL_PATH = f"{__name__}:HeaderTimeoutProtocol"


def timeout_reply(seconds: float) -> bytes:
    """The bytes of the 408 sent when headers are late: JSON ``{"error", "field"}``."""
    body = json.dumps({"error": f"the request headers did not arrive in full within "
                                f"{seconds:g} s; send them at once", "field": None}).encode()
    head = ("HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
    return head + body


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's ``H11Protocol`` that answers 408 and closes a connection whose request
    headers are not in within ``header_timeout_s`` (see the module notes)."""

    #: Seconds; set by ``install``.
    header_timeout_s: float = 10.0
    #: Seconds a timed-out connection keeps reading (and dropping) before it closes.
    linger_s: float = 2.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._start_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._linger_timer is not None:  # answered 408: what still comes is dropped
            return
        # the first byte of a request after a keep-alive pause starts its clock
        if self.conn.their_state is h11.IDLE:
            self._start_header_timer()
        super().data_received(data)
        self._stop_header_timer_once_read()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # a pipelined request already buffered: its headers are timed from now
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self._start_header_timer()
        self._stop_header_timer_once_read()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s,
                                                      self._headers_timed_out)

    def _stop_header_timer_once_read(self) -> None:
        # h11 leaves IDLE for the client's side once it has parsed a request's headers
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        self._unset_keepalive_if_required()
        self.logger.info("request headers not received within %g s: connection closed",
                         self.header_timeout_s)
        self.transport.write(timeout_reply(self.header_timeout_s))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()  # the client reads the 408, then end-of-file
        self._linger_timer = self.loop.call_later(self.linger_s, self.transport.close)


def install(seconds: float) -> None:
    """Have uvicorn servers created from now on in this process use ``HeaderTimeoutProtocol``
    with a ``seconds`` header timeout for ``http="auto"`` and ``http="h11"``."""
    if not seconds > 0:
        raise ValueError(f"the header timeout must be above 0 s, not {seconds:g}")
    HeaderTimeoutProtocol.header_timeout_s = float(seconds)
    for name in ("auto", "h11"):
        uvicorn.config.HTTP_PROTOCOLS[name] = PROTOCOL_PATH
