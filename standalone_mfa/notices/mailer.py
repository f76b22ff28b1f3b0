"""Turning a queued notice into a mail, and handing mails to SMTP (Flask-Mail).

The mail is rendered when it is sent, from `templates/mail/<kind>.txt` (which sets
`subject`, `what` and `advice`) and the two layouts that wrap those in a plain-text
and a simple HTML part. Headers carry only the validated address and a fixed
subject: never a username (SC-37). The address is checked again when the mail is made
(`core.addresses`), so a row changed behind the application's back cannot add a
header or a recipient: such a notice fails, audited, like any other.

Each mail speaks its user's saved language (`user.locale`), else the default one,
whoever triggered it and from wherever it is sent: the sender thread and the CLI
have an app context but no request, so the language is forced around the
rendering rather than read from one. Times stay ISO with their zone's name
("2026-11-28 13:00 CET"): unambiguous in every language."""

from __future__ import annotations

import datetime as dt
import smtplib
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import flask_mail
from flask import current_app
from flask_babel import force_locale

from ..core import addresses, browsers
from ..core.config import setting
from ..core.models import Notice
from . import outbox

UTC = ZoneInfo("UTC")
# The languages with a catalogue: the same as the pages' picker (web.i18n.LOCALES,
# which this layer may not import; tests/notices/test_mail_languages.py keeps them equal).
LOCALES = ("en", "fr", "de", "es")


class _Connection(flask_mail.Connection):
    """Flask-Mail's connection with a timeout: an SMTP server that accepts the TCP
    connection and then says nothing must not hold a sender forever."""

    def configure_host(self) -> smtplib.SMTP:
        mail, timeout = self.mail, setting("MAIL_TIMEOUT")
        if mail.use_ssl:
            host = smtplib.SMTP_SSL(mail.server, mail.port, timeout=timeout)
        else:
            host = smtplib.SMTP(mail.server, mail.port, timeout=timeout)
        if mail.use_tls:
            host.starttls()
        if mail.username and mail.password:
            host.login(mail.username, mail.password)
        return host


def init_app(app) -> None:
    if setting("MAIL_SERVER", app):
        flask_mail.Mail(app)


def connect() -> _Connection:
    return _Connection(current_app.extensions["mail"])


def local_time(at: dt.datetime, time_zone: str | None) -> str:
    """`at` (naive UTC) in the user's time zone if known and valid, else UTC."""
    zone = UTC
    if time_zone:
        try:
            zone = ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = UTC
    local = at.replace(tzinfo=dt.UTC).astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or "UTC")


def browser_name(user_agent: str | None) -> str | None:
    """ "Firefox 133 on Linux", as the account page names it; None without a browser
    (a CLI command)."""
    return browsers.describe(user_agent) if user_agent else None


def _supported(code: str | None) -> str | None:
    """`code` if it is one of LOCALES (case and region ignored: fr-CA → fr)."""
    if not code:
        return None
    base = code.strip().replace("_", "-").split("-", 1)[0].lower()
    return base if base in LOCALES else None


def mail_locale(user) -> str:
    """The language of `user`'s mails: their saved one, else BABEL_DEFAULT_LOCALE,
    else English."""
    return (
        _supported(getattr(user, "locale", None))
        or _supported(setting("BABEL_DEFAULT_LOCALE"))
        or "en"
    )


def message_for(notice: Notice) -> flask_mail.Message:
    """The mail of `notice`, in its user's language; BadAddress if its address is not
    one we send to."""
    to_address = addresses.normalise(notice.to_address)
    facts = outbox.facts_of(notice)
    user = notice.user
    locale = mail_locale(user)
    with force_locale(locale):
        return _message(notice.kind, to_address, facts, user, locale)


def _message(kind: str, to_address: str, facts: dict, user, locale: str) -> flask_mail.Message:
    context = {
        "lang": locale,
        "kind": kind,
        "username": user.username if user is not None else None,
        "when": local_time(
            dt.datetime.fromisoformat(facts["at"]), getattr(user, "time_zone", None)
        ),
        "ip": facts.get("ip"),
        "browser": browser_name(facts.get("user_agent")),
        "portal_url": setting("GATEWAY_PORTAL_URL"),
        "facts": facts,
    }
    told = current_app.jinja_env.get_template(f"mail/{kind}.txt").make_module(context)
    parts = {
        "subject": " ".join(str(told.subject).split()),  # one line, whatever the template
        # One paragraph each: the templates' line breaks between sentences are layout.
        "what": " ".join(str(told.what).split()),
        "advice": " ".join(str(getattr(told, "advice", "")).split()),
        "link": getattr(told, "link", None),
    }
    return flask_mail.Message(
        subject=parts["subject"],
        recipients=[to_address],
        body=_render("mail/_layout.txt", **context, **parts),
        html=_render("mail/_layout.html", **context, **parts),
    )


def _render(name: str, **context) -> str:
    """A mail template with only what it is given: no page context processors (they
    read the request, which a mail sent after the response has not got)."""
    return current_app.jinja_env.get_template(name).render(**context)
