"""core/hostnames: the one grammar of host names, shared by the settings check, `rd`
and the gateway, and the one "under the domain" rule."""

from __future__ import annotations

import pytest

from standalone_mfa.core import config, hostnames


@pytest.mark.parametrize(
    "name",
    ["example.com", "a.b-c.example.com", "localhost", "x" * 63 + ".com", "xn--bcher-kva.ch"],
)
def test_host_names(name):
    assert hostnames.is_host_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Example.com",  # compared in lower case: callers lower it first
        "example.com.",
        "-a.example.com",
        "a-.example.com",
        "a..example.com",
        "x" * 64 + ".com",
        ".".join(["a" * 63] * 4) + ".com",  # 257 characters
        "exa mple.com",
        "exämple.com",
        "example.com:443",
        "[::1]",
    ],
)
def test_not_host_names(name):
    assert not hostnames.is_host_name(name)


@pytest.mark.parametrize(
    "host, domain, under",
    [
        ("example.com", "example.com", True),
        ("auth.example.com", "example.com", True),
        ("a.b.example.com", ".example.com", True),
        ("AUTH.example.com", "Example.COM", True),
        ("evilexample.com", "example.com", False),
        ("example.com.evil.org", "example.com", False),
        ("example.com", "auth.example.com", False),
        ("example.com", "", False),
    ],
)
def test_under_the_domain(host, domain, under):
    assert hostnames.is_under(host, domain) is under


def test_the_cookie_domain_setting_uses_the_same_grammar():
    """A name the grammar refuses is refused as SESSION_COOKIE_DOMAIN, and one it
    accepts (with two labels at least) is kept."""
    assert config.cookie_domain(".Example.COM") == "example.com"
    for bad in ("a_b.example.com", "-a.example.com", "x" * 64 + ".com", "exämple.com"):
        assert not hostnames.is_host_name(bad.lower())
        with pytest.raises(config.ConfigurationError, match="SESSION_COOKIE_DOMAIN"):
            config.cookie_domain(bad)


def test_visible():
    assert hostnames.is_visible("https://a.example.com/x?y=1")
    for bad in ("", "a b", "a\tb", "é", "a\x7f"):
        assert not hostnames.is_visible(bad)
