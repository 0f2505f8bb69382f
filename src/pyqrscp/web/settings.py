"""Who may use the HTTP listener, and where it listens.

Off unless ``--http [HOST:]PORT`` or the config's ``HTTPPort`` names a port.  It binds to the
loopback address unless a host is given; any other bind needs credentials from the config
(``HTTPToken``, or ``HTTPUser`` with ``HTTPPassword``), which are then required of every
request, local or not.  Without credentials a request must name a loopback host in its
``Host`` header (see :func:`trusted_host`).  CORS answers only the origins
``HTTPAllowOrigin`` lists.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pyqrscp.config import HttpConfig
from pyqrscp.errors import StartupError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_BODY_BYTES = 4 << 30
BODY_TIMEOUT_SECONDS = 600.0
"""A STOW-RS body must arrive within this long; an idle client is dropped after the read
timeout (uvicorn's keep-alive and this module's per-read limit)."""
READ_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The listener's address, credentials and limits, after config file and flags."""

    host: str
    port: int
    token: str | None = None
    user: str | None = None
    password: str | None = None
    allow_origins: tuple[str, ...] = ()
    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout: float = BODY_TIMEOUT_SECONDS
    read_timeout: float = READ_TIMEOUT_SECONDS

    @property
    def needs_credentials(self) -> bool:
        return self.token is not None or self.user is not None

    @property
    def is_local(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address (127.0.0.0/8, ::1)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(netloc: str) -> str:
    """The name in a ``Host`` header or an origin's ``host[:port]``: lower case, without the
    port, the brackets of an IPv6 address or a trailing dot."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1:].partition("]")[0]
    name, colon, port = netloc.rpartition(":")
    return (name if colon and port.isdigit() else netloc).rstrip(".")


def trusted_host(settings: WebSettings, netloc: str) -> bool:
    """Whether a request naming ``netloc`` (``Host`` header) is one to answer.

    Without credentials the listener is on a loopback address and only loopback names are
    trusted, whatever the port (an SSH tunnel forwards another one): a web page whose own
    name was rebound to 127.0.0.1 (DNS rebinding) still sends that name, so it cannot read
    or change the archive.  With credentials any name is answered: such a page has none.
    """
    return settings.needs_credentials or is_loopback(host_name(netloc))


def parse_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (``[::1]:8042`` for IPv6) as ``(host, port)``; host 127.0.0.1 when
    omitted.

    Raises
    ------
    StartupError
        Not a port, or out of 0..65535.
    """
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise StartupError(f"--http/HTTPPort {text!r}: expected [HOST:]PORT") from None
    if not 0 <= port <= 65535:
        raise StartupError(f"--http/HTTPPort port {port} out of range (0..65535)")
    return host, port


def check(settings: WebSettings) -> None:
    """Refuse a listener reachable from other hosts with nobody to authenticate.

    Raises
    ------
    StartupError
        A non-loopback bind without ``HTTPToken`` or ``HTTPUser``/``HTTPPassword``; a user
        without a password or the other way round.
    """
    if (settings.user is None) != (settings.password is None):
        raise StartupError("HTTPUser and HTTPPassword go together")
    if not settings.is_local and not settings.needs_credentials:
        raise StartupError(f"the HTTP listener on {settings.host} is reachable from other "
                           "hosts: set HTTPToken or HTTPUser/HTTPPassword in the config")


def settings_of(address: str | None, http: HttpConfig) -> WebSettings | None:
    """The listener's settings from ``--http`` (or ``HTTPPort``) and the config's other
    ``HTTP...`` keywords; None when no address is given (the listener is off).

    Raises
    ------
    StartupError
        See :func:`parse_address` and :func:`check`.
    """
    if not address:
        return None
    host, port = parse_address(address)
    settings = WebSettings(host, port, token=http.token, user=http.user,
                           password=http.password, allow_origins=http.allow_origins)
    check(settings)
    return settings
