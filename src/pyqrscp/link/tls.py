"""DICOM TLS (PS3.15 Annex B) with storescp's options: the contexts, and the server handshake.

The server handshake runs in the connection's own thread (:func:`handshake_hook`, the
``prepare_connection`` seat of :mod:`pyqrscp.link.transport`) with the ACSE timeout, so a peer that
connects and says nothing holds its own thread only.  The client context serves outgoing
associations (storage commitment reports, C-MOVE sub-associations) with the same key,
certificate, trusted certificates and profile, as DCMTK's tools do.
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pyqrscp.config.options import Options
from pyqrscp.errors import StartupError

if TYPE_CHECKING:
    from pyqrscp.link.transport import ArchiveRequestHandler

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Profile:
    """A DICOM TLS security profile as DCMTK 3.6.7 maps it: TLS 1.2 suites, TLS 1.3 or not."""

    name: str
    ciphers: tuple[str, ...]
    tls13: bool
    extra_ciphers_allowed: bool = True


_BCP195_ND = ("DHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
              "DHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256")
PROFILES: dict[str, Profile] = {
    "bcp195-nd": Profile("Non-downgrading BCP 195 TLS Profile", _BCP195_ND, tls13=True),
    "bcp195": Profile("BCP 195 TLS Profile", (*_BCP195_ND, "AES128-SHA", "DES-CBC3-SHA"),
                      tls13=True),
    "bcp195-ex": Profile("Extended BCP 195 TLS Profile",
                         ("ECDHE-ECDSA-AES256-GCM-SHA384", *_BCP195_ND[:2],
                          "ECDHE-ECDSA-AES128-GCM-SHA256", *_BCP195_ND[2:]),
                         tls13=False, extra_ciphers_allowed=False),
    "aes": Profile("AES TLS Secure Transport Connection Profile", ("AES128-SHA", "DES-CBC3-SHA"),
                   tls13=False),
}
_PEER_CERT_MODES = {"require": ssl.CERT_REQUIRED, "verify": ssl.CERT_OPTIONAL,
                    "ignore": ssl.CERT_NONE}
_KEY_EXCHANGE = {"RSA": "", "ECDHE_RSA": "ECDHE-RSA-", "ECDHE_ECDSA": "ECDHE-ECDSA-",
                 "DHE_RSA": "DHE-RSA-", "DHE_DSS": "DHE-DSS-"}
_CIPHER = {"AES_128_GCM": "AES128-GCM-", "AES_256_GCM": "AES256-GCM-", "AES_128_CBC": "AES128-",
           "AES_256_CBC": "AES256-", "CAMELLIA_128_CBC": "CAMELLIA128-",
           "CAMELLIA_256_CBC": "CAMELLIA256-", "3DES_EDE_CBC": "DES-CBC3-"}

_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL"})


@dataclass(frozen=True, slots=True)
class TLSContexts:
    """The server context (incoming associations) and the client context (outgoing ones)."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def build_contexts(options: Options) -> TLSContexts | None:
    """Both contexts, or None without ``+tls``; StartupError names the file or option at fault."""
    if options.tls_key_cert is None:
        _warn_ignored(options)
        return None
    profile = PROFILES.get(options.tls_profile, PROFILES["bcp195-nd"])
    ciphers = _cipher_list(profile, options.tls_ciphers)
    key, cert = options.tls_key_cert
    password = _Password(options.tls_password, key)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _load_key_pair(server, key, cert, password)
    _configure(server, options, profile, ciphers)
    server.verify_mode = _PEER_CERT_MODES[options.tls_peer_cert]
    server.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if options.tls_dh_params is not None:
        _load(lambda path: server.load_dh_params(str(path)), options.tls_dh_params,
              "DH parameters")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _load_key_pair(client, key, cert, password)
    _configure(client, options, profile, ciphers)
    client.check_hostname = False  # DICOM peers are known by AE title, not host name
    client.verify_mode = ssl.CERT_NONE if options.tls_peer_cert == "ignore" else ssl.CERT_REQUIRED
    trusted = options.tls_trusted_files or options.tls_trusted_dirs
    if options.tls_peer_cert != "ignore" and not trusted:
        LOGGER.warning("TLS: no trusted certificates (+cf/+cd): every peer certificate will be "
                       "refused (use -ic to accept any)")
    LOGGER.info("TLS enabled: %s, peer certificates: %s", profile.name, options.tls_peer_cert)
    return TLSContexts(server, client)


def client_tls_args(context: ssl.SSLContext | None, host: str
                    ) -> tuple[ssl.SSLContext, str] | None:
    """pynetdicom's ``tls_args`` for ``AE.associate`` (None: plain TCP)."""
    return None if context is None else (context, host)


def handshake_hook(context: ssl.SSLContext, timeout: float
                   ) -> Callable[[ArchiveRequestHandler], bool]:
    """The ``prepare_connection`` hook: TLS handshake in the connection's thread, bounded."""
    def prepare(handler: ArchiveRequestHandler) -> bool:
        raw: socket.socket = handler.request
        address = _address(handler.client_address)
        previous_timeout = raw.gettimeout()
        try:
            secure = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        except OSError as error:
            LOGGER.warning("TLS connection from %s refused: %s", address, _reason(error))
            raw.close()
            return False
        try:
            secure.settimeout(timeout)
            secure.do_handshake()
            secure.settimeout(previous_timeout)
        except OSError as error:
            LOGGER.warning("TLS handshake with %s failed: %s", address, _reason(error, timeout))
            secure.close()
            return False
        LOGGER.debug("TLS connection from %s: %s, %s, peer certificate %s", address,
                     secure.version(), (secure.cipher() or ("?",))[0],
                     _subject(secure.getpeercert()))
        handler.request = secure
        return True
    return prepare


def _warn_ignored(options: Options) -> None:
    defaults = Options()
    ignored = [field.name for field in dataclasses.fields(options)
               if field.name.startswith("tls_")
               and getattr(options, field.name) != getattr(defaults, field.name)]
    if ignored:
        LOGGER.warning("TLS options (%s) are ignored without +tls", ", ".join(ignored))


class _Password:
    """The private key password: given, or asked once on the terminal and remembered."""

    def __init__(self, given: str | None, key: Path) -> None:
        self.value = given
        self.key = key
        self.used = False

    def __call__(self) -> str:
        self.used = True
        if self.value is None:
            self.value = getpass.getpass(f"password for TLS private key {self.key}: ")
        return self.value


def _configure(context: ssl.SSLContext, options: Options, profile: Profile,
               ciphers: str) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not profile.tls13:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    for path in options.tls_trusted_files:
        _load(lambda p: context.load_verify_locations(cafile=str(p)), path,
              "trusted certificate file")
    for path in options.tls_trusted_dirs:
        if not path.is_dir():
            raise StartupError(f"cannot read trusted certificate folder {path}: not a folder")
        context.load_verify_locations(capath=str(path))
    for path in options.tls_crl_files:
        _load(lambda p: context.load_verify_locations(cafile=str(p)), path, "CRL file")
    crl_check = options.tls_crl_check or ("leaf" if options.tls_crl_files else None)
    if crl_check is not None:
        context.verify_flags |= (ssl.VERIFY_CRL_CHECK_CHAIN if crl_check == "chain"
                                 else ssl.VERIFY_CRL_CHECK_LEAF)


def _load_key_pair(context: ssl.SSLContext, key: Path, cert: Path, password: _Password) -> None:
    for path, what in ((key, "private key"), (cert, "certificate")):
        try:
            path.read_bytes()
        except OSError as error:
            raise StartupError(f"cannot read TLS {what} file {path}: "
                               f"{error.strerror or error}") from error
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key), password=password)
    except EOFError as error:
        raise StartupError(f"no password for TLS private key {key} (use +pw)") from error
    except (OSError, ValueError) as error:
        if password.used:
            why = "wrong password (or not a PEM private key)"
        elif getattr(error, "reason", None) == "KEY_VALUES_MISMATCH":
            why = "the private key does not belong to the certificate"
        else:
            why = f"not a PEM private key and certificate ({_reason(error)})"
        raise StartupError(f"cannot use TLS private key {key} with certificate {cert}: "
                           f"{why}") from error


def _load(load: Callable[[Path], object], path: Path, what: str) -> None:
    try:
        load(path)
    except (OSError, ValueError) as error:
        raise StartupError(f"cannot read {what} {path}: {_reason(error)}") from error


def _cipher_list(profile: Profile, extra: tuple[str, ...]) -> str:
    if extra and not profile.extra_ciphers_allowed:
        raise StartupError(f"+cs: additional ciphersuites not permitted with {profile.name}")
    names = [*profile.ciphers]
    for suite in extra:
        name = openssl_cipher_name(suite)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(name)
        except ssl.SSLError as error:
            raise StartupError(f"+cs: ciphersuite {suite!r} not supported by "
                               f"{ssl.OPENSSL_VERSION}") from error
        names.append(name)
    return ":".join(names)


def openssl_cipher_name(suite: str) -> str:
    """``TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`` -> ``ECDHE-RSA-AES128-GCM-SHA256``.

    DCMTK takes the RFC names; OpenSSL names are passed through unchanged.
    """
    if not suite.startswith("TLS_") or "_WITH_" not in suite:
        return suite
    exchange, _, rest = suite[4:].partition("_WITH_")
    if rest == "CHACHA20_POLY1305_SHA256":
        return f"{_KEY_EXCHANGE.get(exchange, exchange)}CHACHA20-POLY1305"
    cipher, _, mac = rest.rpartition("_")
    if exchange not in _KEY_EXCHANGE or cipher not in _CIPHER:
        return suite
    return f"{_KEY_EXCHANGE[exchange]}{_CIPHER[cipher]}{mac}"


def _reason(error: BaseException, timeout: float | None = None) -> str:
    if isinstance(error, TimeoutError):
        return f"no handshake within {timeout:g} s" if timeout else "timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError) and error.reason:
        if error.reason in _NOT_TLS:
            return "not a TLS client (plain DICOM on the TLS port?)"
        return error.reason.replace("_", " ").lower()
    return str(error.args[-1] if error.args else error)


def _address(client_address: object) -> str:
    if isinstance(client_address, tuple) and len(client_address) >= 2:
        return f"{client_address[0]}:{client_address[1]}"
    return str(client_address)


def _subject(certificate: object) -> str:
    if not isinstance(certificate, dict) or not certificate.get("subject"):
        return "none"
    return ", ".join(f"{key}={value}" for rdn in certificate["subject"] for key, value in rdn)
