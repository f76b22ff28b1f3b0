"""The catalogues (SC-40): every string of the code is in messages.pot, every
catalogue translates all of them (no empty or fuzzy entry), with the same placeholders
as the English, and the compiled .mo files say what the .po files say."""

from __future__ import annotations

import re

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from support.paths import ROOT

TRANSLATIONS = ROOT / "standalone_mfa" / "translations"
LOCALES = ("fr", "de", "es")
# {name} (the message table's), %(name)s (Jinja's {% trans %} and lazy_gettext's).
PLACEHOLDER_RE = re.compile(r"\{[a-z_]+\}|%\([a-z_]+\)[sd]")
COUNTS = {"{count}", "%(count)s", "%(num)s"}
TAG_RE = re.compile(r"</?[a-z]+[^>]*>")


def catalogue(locale: str):
    with (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle, locale=locale)


def template():
    with (TRANSLATIONS / "messages.pot").open("rb") as handle:
        return read_po(handle)


def ids(message) -> tuple[str, ...]:
    return tuple(message.id) if isinstance(message.id, list | tuple) else (message.id,)


def forms(message) -> tuple[str, ...]:
    string = message.string
    return tuple(string) if isinstance(string, list | tuple) else (string,)


def test_messages_pot_holds_exactly_the_strings_of_the_code():
    """`make translations` was run after the last change to a string."""
    from babel.messages.frontend import parse_mapping_cfg

    with (ROOT / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found = {
        message if isinstance(message, str) else message[0]
        for _, _, message, _, _ in extract_from_dir(
            str(ROOT),
            method_map,
            options_map,
            keywords={
                "_": None,
                "gettext": None,
                "ngettext": (1, 2),
                "_l": None,
                "lazy_gettext": None,
            },
        )
        if message
    }
    listed = {ids(m)[0] for m in template() if m.id}
    assert found - listed == set(), "run `make translations`: these are new"
    assert listed - found == set(), "run `make translations`: these are gone"


@pytest.mark.parametrize("locale", LOCALES)
def test_each_catalogue_translates_every_string_with_the_same_placeholders(locale):
    english = {ids(m)[0]: m for m in template() if m.id}
    translated = {ids(m)[0]: m for m in catalogue(locale) if m.id}  # obsolete ones apart
    assert set(english) - set(translated) == set(), "missing: run `make translations`"
    problems = []
    for msgid, message in translated.items():
        if message.fuzzy:
            problems.append(("fuzzy", msgid))
        if not all(form.strip() for form in forms(message)):
            problems.append(("empty", msgid))
            continue
        wanted = sorted(PLACEHOLDER_RE.findall(msgid))
        for form in forms(message):
            got = sorted(PLACEHOLDER_RE.findall(form))
            if not message.pluralizable:
                same = got == wanted
            else:  # a plural form may leave the number out ("une seule"), nothing else
                names = set(PLACEHOLDER_RE.findall(" ".join(ids(message))))
                same = set(got) <= names and names - COUNTS <= set(got)
            if not same:
                problems.append(("placeholders", msgid, form))
            if sorted(TAG_RE.findall(form)) != sorted(TAG_RE.findall(ids(message)[0])):
                problems.append(("markup", msgid, form))
    assert problems == []


@pytest.mark.parametrize("locale", LOCALES)
def test_the_compiled_catalogue_matches_its_source(locale):
    compiled = TRANSLATIONS / locale / "LC_MESSAGES" / "messages.mo"
    assert compiled.exists(), "run make: it compiles the catalogues"
    with compiled.open("rb") as handle:
        built = {ids(m)[0]: forms(m) for m in read_mo(handle) if m.id}
    source = {ids(m)[0]: forms(m) for m in catalogue(locale) if m.id}
    assert built == source, "the .mo is older than its .po: run make"
