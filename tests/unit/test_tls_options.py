"""TLS options (storescp's spellings) and the pure parts of :mod:`pyqrscp.link.tls`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pyqrscp.cli.command import parse_flags
from pyqrscp.config.options import Options
from pyqrscp.errors import StartupError
from pyqrscp.link.tls import build_contexts, openssl_cipher_name


def options_from(argv: list[str]) -> Options:
    flags = parse_flags(argv)
    flags.pop("not_implemented")
    return dataclasses.replace(Options(), **flags)


def test_tls_flags_fill_the_options() -> None:
    options = options_from(["+tls", "k.pem", "c.pem", "+pw", "secret", "+cf", "a.pem", "+cf",
                            "b.pem", "+cd", "certs", "+px", "-vc", "+cs",
                            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "+crl", "r.pem", "+cra"])
    assert options.tls_key_cert == (Path("k.pem"), Path("c.pem"))
    assert options.tls_password == "secret"
    assert options.tls_trusted_files == (Path("a.pem"), Path("b.pem"))
    assert options.tls_trusted_dirs == (Path("certs"),)
    assert options.tls_profile == "bcp195"
    assert options.tls_peer_cert == "verify"
    assert options.tls_ciphers == ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",)
    assert (options.tls_crl_files, options.tls_crl_check) == ((Path("r.pem"),), "chain")


@pytest.mark.parametrize(("argv", "field", "value"), [
    ([], "tls_key_cert", None), (["+tls", "k", "c", "-tls"], "tls_key_cert", None),
    ([], "tls_peer_cert", "require"), (["-ic"], "tls_peer_cert", "ignore"),
    (["-rc"], "tls_peer_cert", "require"), ([], "tls_profile", "bcp195-nd"),
    (["+pz"], "tls_profile", "bcp195-ex"), (["-pw"], "tls_password", ""),
    (["+pw", "x", "+ps"], "tls_password", None), (["-pem"], "tls_key_format", "pem"),
])
def test_tls_flag_spellings(argv: list[str], field: str, value: object) -> None:
    assert getattr(options_from(argv), field) == value


def test_unimplemented_tls_options_are_named() -> None:
    named = parse_flags(["-der", "+rs", "seed", "+pn"])["not_implemented"]
    assert sorted(named) == ["+pn", "+rs", "-der"]


def test_tls_flags_do_not_shadow_dcmqrscp_flags() -> None:
    options = options_from(["-p", "-d", "+p", "1", "2", "+C", "ISO_IR 100", "+cl", "6"])
    assert (options.padding, options.convert_to_charset) == ((1, 2), "ISO_IR 100")


@pytest.mark.parametrize(("tls_name", "openssl_name"), [
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "DHE-RSA-AES256-GCM-SHA384"),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"),
    ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "ECDHE-ECDSA-AES256-SHA384"),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"),
    ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
])
def test_openssl_cipher_name(tls_name: str, openssl_name: str) -> None:
    assert openssl_cipher_name(tls_name) == openssl_name


def test_no_tls_without_enable_tls() -> None:
    assert build_contexts(options_from(["+cf", "ca.pem"])) is None


@pytest.mark.parametrize(("argv", "message"), [
    (["+pz", "+cs", "TLS_RSA_WITH_AES_128_CBC_SHA"], "not permitted with Extended BCP 195"),
    (["+cs", "TLS_NO_SUCH_SUITE"], "ciphersuite 'TLS_NO_SUCH_SUITE' not supported"),
    (["+cf", "/nonexistent/ca.pem"], "/nonexistent/k.pem: No such file"),
])
def test_tls_startup_errors(argv: list[str], message: str) -> None:
    options = options_from(["+tls", "/nonexistent/k.pem", "/nonexistent/c.pem", *argv])
    with pytest.raises(StartupError, match=message):
        build_contexts(options)
