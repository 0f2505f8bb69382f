"""Where the HTTP listener listens and who may use it: the start-up checks and credentials."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from pyqrscp.config import HttpConfig, parse_config
from pyqrscp.errors import ConfigError, StartupError
from pyqrscp.web.access import authorised
from pyqrscp.web.settings import WebSettings, parse_address, settings_of


def test_addresses() -> None:
    assert parse_address("8042") == ("127.0.0.1", 8042)
    assert parse_address("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_address("[::1]:8042") == ("::1", 8042)
    for bad in ("x", "host:", "70000"):
        with pytest.raises(StartupError):
            parse_address(bad)


def test_off_unless_an_address_is_given() -> None:
    assert settings_of(None, HttpConfig()) is None


def test_other_hosts_need_credentials() -> None:
    assert settings_of("127.0.0.1:0", HttpConfig()) is not None
    assert settings_of("localhost:0", HttpConfig()) is not None
    with pytest.raises(StartupError, match="reachable from other hosts"):
        settings_of("0.0.0.0:8042", HttpConfig())
    assert settings_of("0.0.0.0:8042", HttpConfig(token="t")) is not None
    with pytest.raises(StartupError, match="go together"):
        settings_of("0.0.0.0:8042", HttpConfig(user="ann"))


def test_credentials() -> None:
    settings = WebSettings("127.0.0.1", 0, token="tok", user="ann", password="p:w")
    basic = "Basic " + base64.b64encode(b"ann:p:w").decode()
    assert authorised(settings, "Bearer tok") and authorised(settings, basic)
    assert not authorised(settings, "Bearer to")
    assert not authorised(settings, "Basic " + base64.b64encode(b"ann:p").decode())
    assert not authorised(settings, "Basic !!!")
    assert not authorised(settings, "")


def test_config_keywords() -> None:
    text = ("HTTPPort = 0.0.0.0:8042\nHTTPToken = abc\nHTTPUser = ann\nHTTPPassword = 'a b'\n"
            "HTTPAllowOrigin = https://a.example, https://b.example\n"
            "AETable BEGIN\nAETable END\n")
    http = parse_config(text, Path("x.cfg")).http
    assert http == HttpConfig("0.0.0.0:8042", "abc", "ann", "a b",
                              ("https://a.example", "https://b.example"))
    with pytest.raises(ConfigError, match="did you mean 'HTTPPort'"):
        parse_config("HttpPort = 1\n", Path("x.cfg"))


def test_any_origin_with_credentials_is_a_config_error() -> None:
    text = "HTTPToken = abc\nHTTPAllowOrigin = https://a.example,  *\nAETable BEGIN\nAETable END\n"
    with pytest.raises(ConfigError, match=r"x\.cfg:2:39: HTTPAllowOrigin \* .*credentials"):
        parse_config(text, Path("x.cfg"))
    alone = "HTTPAllowOrigin = *\nAETable BEGIN\nAETable END\n"
    assert parse_config(alone, Path("x.cfg")).http.allow_origins == ("*",)
