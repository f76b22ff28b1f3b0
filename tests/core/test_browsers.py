"""`core.browsers`: a user agent in people's words ("Chrome 131 on Linux"), never a
raw string, never an error, whatever the other end sent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from standalone_mfa.core import browsers, messages

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
SAFARI_IPHONE_NO_VERSION = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Safari/605.1.15"
)
EDGE_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"
)
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Mobile Safari/537.36"
)
FIREFOX_IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "FxiOS/133.0 Mobile/15E148 Safari/605.1.15"
)


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (CHROME_LINUX, "Chrome 131 on Linux"),
        (FIREFOX_WINDOWS, "Firefox 133 on Windows"),
        (SAFARI_IPHONE, "Safari 18 on iPhone"),
        (SAFARI_MAC, "Safari 18 on macOS"),
        (EDGE_WINDOWS, "Edge 131 on Windows"),
        (CHROME_ANDROID, "Chrome 131 on Android"),
        (FIREFOX_IPAD, "Firefox 133 on iPad"),
        ("curl/8.5.0", "curl 8"),
        ("Mozilla/5.0 (X11; Linux x86_64)", "Unknown browser on Linux"),
        ("Werkzeug/3.1.3", "Unknown browser"),
        ("", "Unknown browser"),
        ("   ", "Unknown browser"),
        (None, "Unknown browser"),
    ],
)
def test_a_user_agent_reads_as_a_browser_and_a_system(user_agent, expected):
    assert browsers.describe(user_agent) == expected


def test_a_browser_without_a_version_is_named_without_one():
    assert browsers.describe(SAFARI_IPHONE_NO_VERSION) == "Safari on iPhone"


def test_the_unknown_words_come_from_the_message_table():
    assert browsers.describe(None) == messages.text("unknown_browser")
    assert browsers.describe("Mozilla/5.0 (X11; Linux x86_64)") == messages.text(
        "unknown_browser_on_system", system="Linux"
    )


def test_a_long_user_agent_is_read_from_its_start_only(monkeypatch):
    seen = []
    parse = browsers.ua_parser.parse
    monkeypatch.setattr(browsers.ua_parser, "parse", lambda ua: seen.append(ua) or parse(ua))
    padded = CHROME_LINUX + " " + "x" * 10_000
    assert browsers.describe(padded) == "Chrome 131 on Linux"
    assert [len(ua) for ua in seen] == [browsers.MAX_PARSED]


def test_the_cache_is_bounded_and_used():
    assert browsers._describe.cache_parameters()["maxsize"] == browsers.CACHE_SIZE
    browsers._describe.cache_clear()
    browsers.describe(FIREFOX_WINDOWS)
    browsers.describe(FIREFOX_WINDOWS)
    info = browsers._describe.cache_info()
    assert (info.hits, info.misses) == (1, 1)


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        ("Mozilla/5.0 (compatible; " + "Z" * 60 + "bot/1.0; +http://x)", "Z" * 40 + " 1"),
        ("Mozilla/5.0 (compatible; Evil\u202eSpiderbot/2.1)", "Spiderbot 2"),
        ("Foo\x1b[31mBot/1.0", "[31mBot 1"),  # the escape character is gone
        ("Foo\u0007Bot/99999999", "Bot"),
    ],
)
def test_a_name_captured_from_the_string_is_printable_and_short(user_agent, expected):
    """Some patterns take the family from the string itself: what reaches a page or a
    mail has no control or direction characters and a bounded length."""
    assert browsers.describe(user_agent) == expected


def test_a_parser_failure_is_an_unknown_browser_not_an_error(monkeypatch):
    def broken(user_agent):
        raise RuntimeError("a bug in a pattern")

    monkeypatch.setattr(browsers.ua_parser, "parse", broken)
    browsers._describe.cache_clear()
    try:
        assert browsers.describe(CHROME_LINUX) == "Unknown browser"
    finally:
        browsers._describe.cache_clear()


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=600), st.none()))
def test_any_string_gets_a_printable_name(user_agent):
    name = browsers.describe(user_agent)
    assert isinstance(name, str) and name and name.isprintable()
    assert "\n" not in name and len(name) <= 2 * browsers._MAX_NAME + len(" 999999 on ")


@settings(max_examples=75, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from("Mozilla/5.0 (;) Chrome/ Safari/ iPhone OS_ 1239"), max_size=300
    )
)
def test_strings_shaped_like_user_agents_get_a_name(user_agent):
    assert browsers.describe(user_agent).isprintable()
