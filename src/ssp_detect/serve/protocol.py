"""A deadline for request headers, which uvicorn lacks.

uvicorn (0.54, h11) times out a connection only while it is idle between two requests
(``timeout_keep_alive``) and cancels that timer at the first byte received: a client that connects
and sends nothing, or sends its headers a byte at a time, holds its connection for ever (measured:
still open after 12 s at a byte per 0.2 s, with ``timeout_keep_alive`` 5 s). The protocol below
gives each request ``header_timeout_s`` to send its whole head, from the connection or from the end
of the previous response; a client still sending then gets 408 and the connection is closed.
Bodies have their own deadline in the ASGI layer (:class:`~ssp_detect.serve.middleware.BodyLimits`).
"""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline for each request's head; see the module docstring.

    Build one for a timeout with :func:`protocol_with_header_timeout`.
    """

    header_timeout_s: float = 10.0

    _head_deadline: asyncio.TimerHandle | None = None
    _waiting_after: object = None  # the request cycle that was current when the deadline was armed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._disarm_when_head_arrived()

    def on_response_complete(self) -> None:
        self._arm()  # before: a pipelined request may start within
        super().on_response_complete()
        self._disarm_when_head_arrived()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._waiting_after = self.cycle
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _disarm_when_head_arrived(self) -> None:
        if self.cycle is not self._waiting_after:  # a new request's head was parsed
            self._disarm()

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        log.info(
            "Closing the connection of %s: its request headers took over %g s.", self.client, self.header_timeout_s
        )
        body = json.dumps(
            {
                "error": f"The request headers did not arrive within {self.header_timeout_s:g} s; "
                "the connection is closed."
            }
        ).encode()
        head = (
            "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            f"x-content-type-options: nosniff\r\nconnection: close\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()


def protocol_with_header_timeout(seconds: float) -> type[HeaderDeadlineProtocol]:
    """:class:`HeaderDeadlineProtocol` giving each request's head ``seconds``; pass it to uvicorn as
    ``http=``."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": seconds})
