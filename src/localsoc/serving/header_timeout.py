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

A reply sent before the request's body has arrived in full (a 401, 413 or 415 answered from the
headers, a GET or OPTIONS that declares a body its route never reads) says ``Connection: close``
and ends the connection the same way, whatever the method or the reply: the client still sending would otherwise hold it
open (uvicorn waits for the rest of the body, however slowly it comes, before the next request).
Every close of a connection whose client is still sending (uvicorn's own, after a reply with
``Connection: close``) is a lingering close too: the protocol hands uvicorn a transport whose
``close`` lingers in that case (``LingeringTransport``).

``install(seconds)`` makes uvicorn build this protocol for ``http="auto"`` and ``"h11"`` (BentoML
passes neither, so "auto" is used), and run it on asyncio's event loop for ``loop="auto"``: the
protocol is written and tested against asyncio's transports, and "auto" would pick uvloop
wherever it is installed (the dev virtualenv has it through kedro-viz; the image has not), so
the server is the same in both. httptools, installed alongside, is then never used. The service
module calls it at import, in every worker, before the worker creates its uvicorn server.
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


class LingeringTransport:
    """The protocol's transport as uvicorn sees it: ``close`` is the protocol's lingering close
    while the client is still sending a request's body, else the transport's own close."""

    def __init__(self, transport: asyncio.Transport, protocol: HeaderTimeoutProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self._protocol.client_sending():
            self._protocol.close_lingering()
        else:
            self._transport.close()


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
        self._socket_transport = transport
        self.transport = LingeringTransport(transport, self)  # type: ignore[assignment]
        self.app = self._closing_early_replies(self.app)
        self._start_header_timer()

    def _closing_early_replies(self, app):
        """``app`` with ``Connection: close`` added to a reply that starts while the client is
        still sending the request's body, so that the client does not reuse the connection
        that ends after it (``on_response_complete``)."""

        async def wrapped(scope, receive, send):
            async def send_closing(message):
                if message["type"] == "http.response.start" and self.client_sending():
                    headers = list(message.get("headers", []))
                    if not any(name.lower() == b"connection" for name, _ in headers):
                        message = {**message, "headers": [*headers, (b"connection", b"close")]}
                await send(message)

            await app(scope, receive, send_closing)

        return wrapped

    @property
    def lingering(self) -> bool:
        """Whether the connection is in its lingering close (answered; input dropped)."""
        return self._linger_timer is not None

    def client_sending(self) -> bool:
        """Whether the client has sent a request's headers but not yet all of its body."""
        return self.conn.their_state is h11.SEND_BODY

    def data_received(self, data: bytes) -> None:
        if self.lingering:  # answered: what still comes is dropped
            return
        # the first byte of a request after a keep-alive pause starts its clock
        if self.conn.their_state is h11.IDLE:
            self._start_header_timer()
        super().data_received(data)
        self._stop_header_timer_once_read()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.client_sending() and not self.transport.is_closing():
            # answered before the body arrived in full: nothing more is read from this client
            self.logger.info("replied before the request body arrived: connection closed")
            self.close_lingering()
            return
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
        self.close_lingering()

    def close_lingering(self) -> None:
        """End the connection after what was written: end-of-file at once (the client reads the
        reply, then end-of-file), what the client still sends read and dropped for
        ``linger_s``, then the socket closed."""
        if self.lingering:
            return
        transport = self._socket_transport
        self._cancel_header_timer()
        self._unset_keepalive_if_required()
        if transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._linger_timer = self.loop.call_later(self.linger_s, transport.close)
        transport.resume_reading()  # uvicorn pauses reading above 64 KiB of unread body


def install(seconds: float) -> None:
    """Have uvicorn servers created from now on in this process use ``HeaderTimeoutProtocol``
    with a ``seconds`` header timeout for ``http="auto"`` and ``http="h11"``, on asyncio's
    event loop for ``loop="auto"``."""
    if not seconds > 0:
        raise ValueError(f"the header timeout must be above 0 s, not {seconds:g}")
    HeaderTimeoutProtocol.header_timeout_s = float(seconds)
    for name in ("auto", "h11"):
        uvicorn.config.HTTP_PROTOCOLS[name] = PROTOCOL_PATH
    uvicorn.config.LOOP_FACTORIES["auto"] = uvicorn.config.LOOP_FACTORIES["asyncio"]
