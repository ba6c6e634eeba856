"""The service's ASGI guards, outermost first: security headers on every response, the Host
allow-list, cross-origin requests, the declared body size, the cap on requests in flight, the
body's size and time as it arrives.

Each refuses with the service's JSON error body (``{"error": "<one sentence>"}``); a refusal sent
before the body was read closes the connection (``Connection: close``), so the rest of that body is
never read, except the in-flight cap's 503 (see :class:`InFlightLimit`).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ssp_detect.serve.limits import RETRY_AFTER_S, mib
from ssp_detect.serve.schemas import error_response

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CLOSE = {"connection": "close"}

# The web page: its own scripts, styles and API only; images are drawn from local files (blob:).
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


def header(scope: Scope, name: bytes) -> str | None:
    """The value of a request header (the first one), decoded as Latin-1; None when absent."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def host_name(host: str) -> str:
    """The name of a Host header value without its port, lower case: ``[::1]:8000`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(bind_host: str) -> bool:
    """True when the address the server listens on accepts local connections only."""
    name = host_name(bind_host) if bind_host.startswith("[") else bind_host.strip().lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AccessPolicy:
    """Who may talk to the service.

    Attributes:
        allowed_hosts: Host header names (no port) the service answers to, ``*`` for any; None
            for any. Requests for other names (a DNS-rebinding page's own name, for one) get 400.
        cors_origins: Origins (``https://app.example``) whose pages may call the API from a
            browser: they get CORS headers, and their POSTs are accepted. By default none: a POST
            from a page of any other origin than the service's own gets 403, and no response
            carries CORS headers, so no other page can read an answer.
    """

    allowed_hosts: tuple[str, ...] | None = None
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def for_bind(
        cls, bind_host: str, allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = ()
    ) -> AccessPolicy:
        """The policy of a server listening on ``bind_host``: the hosts given, else the loopback
        names when it listens on a loopback address, else any host."""
        hosts = tuple(host_name(h) if h != "*" else h for h in allowed_hosts)
        if not hosts and is_loopback(bind_host):
            hosts = LOOPBACK_NAMES
        origins = tuple(o.rstrip("/") for o in cors_origins)
        return cls(None if not hosts or "*" in hosts else hosts, origins)


class SecurityHeaders:
    """Adds the standard security headers, and a Content-Security-Policy (``csp`` by path prefix,
    else :data:`PAGE_CSP`), to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, csp: dict[str, str] | None = None) -> None:
        self.app = app
        self.csp = csp or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        policy = next((v for prefix, v in self.csp.items() if path.startswith(prefix)), PAGE_CSP)
        added = [*SECURITY_HEADERS.items(), ("content-security-policy", policy)]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {key.lower() for key, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in added if k.encode() not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostAllowList:
    """Answers 400 to a request whose Host header names no allowed host (``allowed`` None: any)."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...] | None) -> None:
        self.app = app
        self.allowed = None if allowed is None else frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allowed is None:
            await self.app(scope, receive, send)
            return
        host = header(scope, b"host") or ""
        if host_name(host) not in self.allowed:
            sentence = (
                f"The Host header {host!r} is not a name this server answers to; use one of "
                f"{', '.join(sorted(self.allowed))}, or start it with --allowed-host."
            )
            await error_response(400, sentence, headers=CLOSE)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class CrossOriginGuard:
    """Answers 403 to a request with side effects (any method but GET, HEAD, OPTIONS) sent by a
    browser page of another origin than the service's own and the ``allowed`` ones.

    A browser names the page's origin in ``Origin`` on such requests; a request without one does
    not come from a page of another origin (curl, scripts, same-origin form posts of old browsers).
    """

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...] = ()) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        origin = header(scope, b"origin")
        if origin is None or origin.rstrip("/") in self.allowed or self._same_origin(scope, origin):
            await self.app(scope, receive, send)
            return
        sentence = (
            f"Requests from pages of origin {origin!r} are refused; the API answers its own page, "
            "or pages of origins given with --cors-origin."
        )
        await error_response(403, sentence, headers=CLOSE)(scope, receive, send)

    @staticmethod
    def _same_origin(scope: Scope, origin: str) -> bool:
        host = (header(scope, b"host") or "").lower()
        parts = urlsplit(origin.lower())
        return bool(host) and parts.scheme in ("http", "https") and parts.netloc == host


class InFlightLimit:
    """Answers 503 with ``Retry-After`` to a request under ``paths`` beyond ``max_in_flight`` of them
    in the app at once (counted from the start of the request to the end of its response).

    The connection stays open when the body's length is declared (within the upload limit, checked
    before by :class:`DeclaredSizeLimit`): uvicorn then reads the rest of the body and drops it, so
    the client, still sending, reads the 503 instead of a reset connection.
    """

    def __init__(self, app: ASGIApp, max_in_flight: int, paths: tuple[str, ...]) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.paths = paths
        self.in_flight = 0
        self.peak = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.paths):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            sentence = f"The server is busy with {self.in_flight} requests, its limit; retry in {RETRY_AFTER_S} s."
            headers = {"retry-after": str(RETRY_AFTER_S)}
            if header(scope, b"content-length") is None:  # a chunked body of any length: do not read it
                headers.update(CLOSE)
            await error_response(503, sentence, headers=headers)(scope, receive, send)
            return
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class UploadTooLarge(HTTPException):
    """A request body over the upload limit (413), raised while the body streams in."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413,
            f"The request body is over the upload limit of {mib(max_bytes)} ({max_bytes:,} bytes); "
            "send fewer or smaller files.",
            headers=CLOSE,
        )


class BodyTimeout(HTTPException):
    """A request body that did not arrive in time (408), raised while the body streams in."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            f"The request body did not arrive within {seconds:g} s; send it faster, or send smaller files.",
            headers=CLOSE,
        )


class DeclaredSizeLimit:
    """Answers 413 to a request whose ``Content-Length`` is over ``max_bytes``, without reading its body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = (header(scope, b"content-length") or "") if scope["type"] == "http" else ""
        if declared.isdigit() and int(declared) > self.max_bytes:
            error = UploadTooLarge(self.max_bytes)
            await error_response(error.status_code, error.detail, headers=error.headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimits:
    """Refuses request bodies over ``max_bytes`` or slower than ``timeout_s`` in all, as they arrive.

    A body is counted as it arrives and cut off with :class:`UploadTooLarge` past ``max_bytes`` (a
    chunked one; a declared one is refused before, by :class:`DeclaredSizeLimit`). The whole body
    must arrive within ``timeout_s`` of the end of the headers, however it is spread out (a client
    trickling a byte a second included), else :class:`BodyTimeout` (408).

    Args:
        app: The wrapped ASGI app.
        max_bytes: Largest accepted body.
        timeout_s: Longest time for the whole body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received = 0
        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body: only the disconnect is left to wait for, as long as it takes
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadTooLarge(self.max_bytes)
                body_done = not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send)
