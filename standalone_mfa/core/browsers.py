"""Browser names for people: "Chrome 131 on Linux" rather than the raw user agent a
session, a remembered device or a mail notice keeps. `ua-parser` reads the string;
this module only picks the words, bounds the cost and never lets a strange string
break a page (it is whatever the other end chose to send)."""

from __future__ import annotations

import functools
import logging

import ua_parser

from . import messages

logger = logging.getLogger("standalone_mfa.browsers")

# Stored user agents are cut at 255 characters; anything longer is not parsed whole
# (the pure-Python resolver tries every pattern: the cost grows with the length).
MAX_PARSED = 512
# Several pages each show a handful of agents, mostly the same few: 1024 names are
# plenty and bound the memory (at most 1024 strings of MAX_PARSED characters).
CACHE_SIZE = 1024
# What the parser calls the same browser on a phone, said once.
_FAMILIES = {
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Chrome",
    "HeadlessChrome": "Headless Chrome",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
    "Opera Mobile": "Opera",
    "Samsung Internet": "Samsung Internet",
}
_SYSTEMS = {"Mac OS X": "macOS", "Chrome OS": "ChromeOS"}
# On these the device says more than the system ("iPhone", not "iOS").
_DEVICES = {"iPhone", "iPad", "iPod"}
# A family comes from the string itself (some patterns capture it): keep it short.
_MAX_NAME = 40
_MAX_VERSION = 6


def describe(user_agent: str | None) -> str:
    """The browser and system behind `user_agent`, in people's words: "Chrome 131 on
    Linux", "Safari 18 on iPhone"; "Unknown browser" for an empty or unreadable one.
    Never raises, whatever the string."""
    if not isinstance(user_agent, str) or not user_agent.strip():
        return messages.text("unknown_browser")
    return _describe(user_agent[:MAX_PARSED])


@functools.lru_cache(maxsize=CACHE_SIZE)
def _describe(user_agent: str) -> str:
    try:
        parsed = ua_parser.parse(user_agent)
    except Exception:  # a parser bug must not take a page down; the name is a nicety
        logger.warning("ua-parser failed on a user agent", exc_info=True)
        return messages.text("unknown_browser")
    browser = _browser(parsed.user_agent)
    system = _system(parsed.os, parsed.device)
    if browser and system:
        return messages.text("browser_on_system", browser=browser, system=system)
    if browser:
        return browser
    if system:
        return messages.text("unknown_browser_on_system", system=system)
    return messages.text("unknown_browser")


def _browser(agent) -> str | None:
    name = _name(agent.family if agent else None)
    if name is None:
        return None
    name = _FAMILIES.get(name, name)
    major = agent.major or ""
    has_version = major.isascii() and major.isdigit() and len(major) <= _MAX_VERSION
    return f"{name} {major}" if has_version else name


def _system(system, device) -> str | None:
    if device is not None and device.family in _DEVICES:
        return device.family
    name = _name(system.family if system else None)
    return _SYSTEMS.get(name, name) if name else None


def _name(value: str | None) -> str | None:
    """A printable, bounded piece of a name, or None for the parser's "Other"."""
    if not value:
        return None
    cleaned = " ".join("".join(c for c in value if c.isprintable()).split())[:_MAX_NAME]
    return cleaned if cleaned and cleaned != "Other" else None
