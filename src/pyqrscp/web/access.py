"""Credentials for the HTTP listener (a bearer token or HTTP basic, from the config) and the
``Host`` names it answers.

Checked for every request once any is configured (a non-loopback bind requires one, see
``settings.py``).  The comparison takes the same time whatever the guess.  CORS preflight
requests are answered before this check (browsers send them without credentials).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from pyqrscp.web.settings import WebSettings, trusted_host

LOGGER = logging.getLogger(__name__)


def authorised(settings: WebSettings, header: str) -> bool:
    """Whether an Authorization header carries the configured token or user and password."""
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and settings.token is not None:
        return hmac.compare_digest(value.encode(), settings.token.encode())
    if scheme == "basic" and settings.user is not None and settings.password is not None:
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (hmac.compare_digest(user.encode(), settings.user.encode())
                & hmac.compare_digest(password.encode(), settings.password.encode()))
    return False


class RequireCredentials:
    """ASGI middleware: 401 (with the challenge a browser understands) without credentials."""

    def __init__(self, app: ASGIApp, settings: WebSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.settings.needs_credentials:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization", b"").decode("latin-1")
        if authorised(self.settings, header):
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        LOGGER.warning("HTTP %s %s from %s:%s refused: %s", scope.get("method"),
                       scope.get("path"), client[0], client[1],
                       "wrong credentials" if header else "no credentials")
        challenge = ('Basic realm="pyqrscp", charset="UTF-8"' if self.settings.user
                     else 'Bearer realm="pyqrscp"')
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"www-authenticate", challenge.encode()),
                                (b"content-type", b"text/plain; charset=utf-8")]})
        await send({"type": "http.response.body", "body": b"credentials required\n"})


class TrustedHosts:
    """ASGI middleware: 400 to a request whose ``Host`` the listener does not trust (see
    :func:`~pyqrscp.web.settings.trusted_host`); outermost, before CORS and credentials."""

    def __init__(self, app: ASGIApp, settings: WebSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = dict(scope.get("headers") or []).get(b"host")
        if host is None or trusted_host(self.settings, host.decode("latin-1")):
            await self.app(scope, receive, send)
            return
        client = scope.get("client") or ("?", 0)
        LOGGER.warning("HTTP %s %s from %s:%s refused: Host %r is not a loopback name (set "
                       "HTTPToken or HTTPUser/HTTPPassword to answer other names)",
                       scope.get("method"), scope.get("path"), client[0], client[1],
                       host.decode("latin-1"))
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
        await send({"type": "http.response.body",
                    "body": b"this listener answers loopback host names only\n"})
