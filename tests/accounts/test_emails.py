"""Email addresses (issue 12): an administrator's address counts as confirmed; a user's
own waits for a single-use, expiring, hashed link mailed to it, while notices keep
going to the old address and the new one gets nothing else; every address is checked
(SC-37); the time zone of mails; `Remote-Email` carries the confirmed address only."""

from __future__ import annotations

import datetime as dt
import re
import time
from urllib.parse import urlsplit

import pytest
from support.app import PASSWORD, make_app
from support.client import Browser, api_request, cli, together
from support.db import audit_rows, database_dump
from support.gateway import make_gateway_app
from support.pages import admin_messages
from support.smtp import mail_config
from support.steps import api_token, change_password, signed_in_admin, step_up

from standalone_mfa.accounts import emails
from standalone_mfa.core import addresses
from standalone_mfa.core.db import db
from standalone_mfa.core.models import EmailConfirmation, Notice, User
from standalone_mfa.notices import sender
from standalone_mfa.ops import maintenance

NEW = "alice.new@example.com"
OLD = "alice@example.com"
LINK_RE = re.compile(r"(https?://[^\s\"<>]+/account/email/confirm\?token=([A-Za-z0-9_-]+))")

# Addresses that must never be stored: a line break or NUL (a header injected after
# the To: line), two recipients, a display name, too long, a non-ASCII local part.
REFUSED = [
    "mallory@example.com\r\nBcc: victim@example.com",
    "mallory@example.com\nBcc: victim@example.com",
    "mallory@example.com\rSubject: pwned",
    "mallory@example.com\x00victim@example.com",
    "mallory@example.com, victim@example.com",
    "mallory@example.com victim@example.com",
    "Mallory <mallory@example.com>",
    '"Mallory" <mallory@example.com>',
    "mallory@example.com>\r\nBcc: <victim@example.com",
    "x" * 250 + "@example.com",
    "mallory@" + "x" * 64 + ".example.com",  # a domain label over 63 characters
    "mälory@example.com",  # would need SMTPUTF8
    "mallory",
    "@example.com",
    "mallory@",
    "",
    "   ",
    # Special-use names no mail server delivers, intranet or not; a name without a dot.
    "mallory@printer.localhost",
    "mallory@host.invalid",
    "mallory@hidden.onion",
    "mallory@1.168.192.in-addr.arpa",
    "mallory@test",
    "mallory@local",
    "mallory@corp",
    "mallory@.local",
    "mallory@-nas.home.arpa",
]
# Intranet names a self-hosted mail server delivers, and how they are stored.
INTRANET = [
    ("signin@corp.internal", "signin@corp.internal"),
    ("bob@corp.lan", "bob@corp.lan"),
    ("Bob@NAS.Home.Arpa", "Bob@nas.home.arpa"),
    ("bob@home.arpa", "bob@home.arpa"),
    ("bob@printer.local", "bob@printer.local"),
    ("bob@ci.test", "bob@ci.test"),
    ("bob@bücher.local", "bob@xn--bcher-kva.local"),
]


def user_row(app, username="alice") -> User:
    with app.app_context():
        return User.get(User.username == username)


def links(app) -> list[EmailConfirmation]:
    with app.app_context():
        return list(EmailConfirmation.select().order_by(EmailConfirmation.id))


def notices(app) -> list[Notice]:
    with app.app_context():
        return list(Notice.select().order_by(Notice.id))


def signed_in(app, clock, username="alice") -> Browser:
    browser = Browser(app, clock)
    assert browser.login(username).status_code == 302
    return browser


def ask_for(browser, address, password=PASSWORD):
    browser.get("/account/email")
    return browser.post("/account/email", {"current_password": password, "email": address})


def mails_to(smtp, address, count=1, timeout=10.0):
    """Wait until `count` mails reached `address`; them."""
    deadline = time.monotonic() + timeout
    while len(smtp.to(address)) < count and time.monotonic() < deadline:
        smtp.wait_for(len(smtp.received) + 1, timeout=0.2)
    return smtp.to(address)


def confirm_mail(smtp, address):
    """The confirmation mail that reached `address`, its link and its token."""
    [mail] = mails_to(smtp, address)
    match = LINK_RE.search(mail.text)
    assert match, mail.text
    return mail, match.group(1), match.group(2)


def path_of(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def refused_page(response) -> bool:
    """The link's page says it does not work, and offers no button."""
    page = response.get_data(as_text=True)
    return (
        response.status_code == 200 and 'id="link-problem"' in page and 'name="token"' not in page
    )


def press_confirm(browser, link):
    """Open the link (GET: changes nothing), then press the page's button."""
    page = browser.get(path_of(link))
    assert page.status_code == 200, page.get_data(as_text=True)
    token = re.search(r'name="token" type="hidden" value="([^"]+)"', page.get_data(as_text=True))
    assert token, page.get_data(as_text=True)
    return browser.post("/account/email/confirm", {"token": token.group(1)})


# --- Checking addresses (SC-37) ----------------------------------------------------------


@pytest.mark.parametrize("address", REFUSED)
def test_sc37_an_administrator_cannot_store_a_header_injection_or_a_bad_address(app, address):
    with app.app_context():
        alice = User.get(User.username == "alice")
        with pytest.raises(emails.BadAddress):
            emails.set_by_admin(alice, address, actor="test")
    assert user_row(app).email is None
    assert audit_rows(app, "email_set") == []


@pytest.mark.parametrize("address", REFUSED[:9])
def test_sc37_the_cli_refuses_a_header_injection_and_changes_nothing(app, address):
    result = cli(app, "user", "email", "alice", address)
    assert result.exit_code == 1
    assert "Not a usable email address" in result.output and "Nothing changed." in result.output
    assert user_row(app).email is None


@pytest.mark.parametrize(("address", "stored"), INTRANET)
def test_an_intranet_address_is_accepted_still_checked(app, address, stored):
    assert addresses.normalise(address) == stored
    result = cli(app, "user", "email", "alice", address)
    assert result.exit_code == 0, result.output
    assert user_row(app).email == stored


def test_an_idn_domain_is_stored_in_its_ascii_form_and_case_of_the_domain_dropped(app):
    with app.app_context():
        alice = User.get(User.username == "alice")
        emails.set_by_admin(alice, "  Alice@Bücher.Example.COM ", actor="test")
    assert user_row(app).email == "Alice@xn--bcher-kva.example.com"


def test_sc37_a_user_cannot_ask_for_a_header_injection_either(mail_app, clock, smtp):
    browser = signed_in(mail_app, clock)
    for address in REFUSED[:9]:
        response = ask_for(browser, address)
        assert response.status_code == 200
        assert 'class="field-error"' in response.get_data(as_text=True)
    assert user_row(mail_app).pending_email is None and links(mail_app) == []
    assert sender.wait_idle(5) and smtp.received == []


# --- The CLI ---------------------------------------------------------------------------------


def test_cli_user_create_with_an_email_sets_it_confirmed(app):
    args = ("user", "create", "carol", "--password-stdin", "--email", "Carol@Example.com")
    result = cli(app, *args, input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "Notices go to Carol@example.com." in result.output
    carol = user_row(app, "carol")
    assert (carol.email, carol.pending_email) == ("Carol@example.com", None)
    assert ("email_set", "ok", "carol", "cli", "Carol@example.com") in audit_rows(app)


def test_cli_user_create_with_a_bad_email_creates_nobody(app):
    args = ("user", "create", "carol", "--password-stdin", "--email", "carol@")
    result = cli(app, *args, input=PASSWORD + "\n")
    assert result.exit_code == 1 and "Not a usable email address" in result.output
    assert user_row(app, "alice") is not None
    with app.app_context():
        assert User.get_or_none(User.username == "carol") is None


def test_cli_user_email_shows_sets_and_removes(app):
    assert cli(app, "user", "email", "alice").output == "none\n"
    result = cli(app, "user", "email", "ALICE", "alice@example.com")
    assert result.exit_code == 0 and "now go to alice@example.com" in result.output
    assert cli(app, "user", "email", "alice").output == "alice@example.com\n"
    again = cli(app, "user", "email", "alice", "alice@example.com")
    assert again.exit_code == 0 and "nothing changed" in again.output
    both = cli(app, "user", "email", "alice", "x@example.com", "--remove")
    assert both.exit_code == 1 and user_row(app).email == "alice@example.com"
    removed = cli(app, "user", "email", "alice", "--remove")
    assert removed.exit_code == 0 and "no address now" in removed.output
    assert user_row(app).email is None
    assert cli(app, "user", "email", "alice", "--remove").output.endswith("nothing changed.\n")
    assert [row[:2] for row in audit_rows(app) if row[0].startswith("email")] == [
        ("email_set", "ok"),
        ("email_set", "unchanged"),
        ("email_removed", "ok"),
        ("email_removed", "unchanged"),
    ]
    assert "email:         none" in cli(app, "user", "show", "alice").output


def test_cli_user_email_for_an_unknown_user_says_so(app):
    result = cli(app, "user", "email", "nobody", "nobody@example.com")
    assert result.exit_code == 1 and "No user named 'nobody'" in result.output


def test_two_users_may_share_an_address(app):
    assert cli(app, "user", "email", "alice", "team@example.com").exit_code == 0
    assert cli(app, "user", "email", "bob", "team@example.com").exit_code == 0
    assert user_row(app, "bob").email == user_row(app, "alice").email == "team@example.com"


# --- A user changes their address --------------------------------------------------------


def test_sc37_a_new_address_gets_a_link_that_works_once(mail_app, clock, smtp):
    browser = signed_in(mail_app, clock)
    response = ask_for(browser, NEW)
    assert response.status_code == 302 and response.headers["Location"] == "/account/security"
    alice = user_row(mail_app)
    assert (alice.email, alice.pending_email) == (OLD, NEW)  # unconfirmed meanwhile
    page = browser.page("/account/security")
    assert "alice.new@example.com</strong> (unconfirmed)" in page

    mail, link, token = confirm_mail(smtp, NEW)
    assert mail.envelope_to == [NEW] and mail.message["To"] == NEW
    assert mail.message["Subject"] == "Confirm your email address"
    assert link.startswith("http://localhost/account/email/confirm?token=")
    assert token in mail.html and "within 24 hours" in mail.text
    headers = "".join(f"{k}: {v}" for k, v in mail.message.items())
    assert "alice" not in headers.replace(NEW, "")  # no username in a header
    # Stored only as its hash; the notice's facts (the link) are encrypted.
    assert token not in database_dump(mail_app)
    [row] = links(mail_app)
    assert row.address == NEW and row.expires_at == clock.now() + dt.timedelta(hours=24)

    # Opening the link (what a mail scanner does) changes nothing.
    for _ in range(2):
        assert browser.get(path_of(link)).status_code == 200
    assert user_row(mail_app).email == OLD and links(mail_app)[0].used_at is None

    confirmed = press_confirm(browser, link)
    assert confirmed.status_code == 302
    alice = user_row(mail_app)
    assert (alice.email, alice.pending_email) == (NEW, None)
    assert "Security notices go to <strong>alice.new@example.com</strong>" in browser.page(
        "/account/security"
    )
    # Once: the same link again is refused, by GET and by POST.
    assert refused_page(browser.get(path_of(link)))
    again = browser.post("/account/email/confirm", {"token": token})
    assert again.status_code == 400 and "already used" in again.get_data(as_text=True)
    assert user_row(mail_app).email == NEW
    assert [row[:2] for row in audit_rows(mail_app, "email_change")] == [
        ("email_change", "requested"),
        ("email_change", "confirmed"),
        ("email_change", "not_valid"),  # the POST; a GET writes nothing
    ]

    # The old address is told notices no longer go to it.
    [told] = mails_to(smtp, OLD)
    assert told.message["Subject"] == "The email address of your account was changed"
    assert "from now on they go to alice.new@example.com" in told.text


def test_two_clicks_at_once_confirm_once(mail_app, smtp):
    """Of two confirmations racing with one link, exactly one counts (the conditional
    update): one audit row, one mail to the old address."""

    def ask(address) -> str:
        made = []
        with mail_app.app_context():
            alice = User.get(User.username == "alice")
            emails.request_change(alice, address, link_for=lambda t: made.append(t) or t)
        return made[0]

    def click(token):
        with mail_app.app_context():
            try:
                return emails.confirm(User.get(User.username == "alice"), token)
            finally:
                db.close()

    for attempt in range(3):
        token = ask(f"race{attempt}@example.com")
        outcomes = together(lambda: click(token), lambda: click(token))  # noqa: B023
        assert sorted(outcomes) == [emails.CONFIRMED, emails.NOT_VALID]
        assert user_row(mail_app).email == f"race{attempt}@example.com"
    confirmed = [row for row in audit_rows(mail_app, "email_change") if row[1] == "confirmed"]
    assert len(confirmed) == 3
    with mail_app.app_context():
        told = Notice.select().where(Notice.kind == "address_changed").count()
    assert told == 3  # one per confirmation, none for the click that lost


def test_notices_go_to_the_old_address_until_the_link_is_used(mail_app, clock, smtp):
    browser = signed_in(mail_app, clock)
    ask_for(browser, NEW)
    _, link, _ = confirm_mail(smtp, NEW)
    change_password(browser, PASSWORD, "another password 123")
    told = mails_to(smtp, OLD)
    assert [m.message["Subject"] for m in told] == ["Your password was changed"]
    assert len(smtp.to(NEW)) == 1  # the new address got its link and nothing else
    press_confirm(browser, link)
    change_password(browser, "another password 123", "a third password 123")
    told = mails_to(smtp, NEW, 2)
    assert [m.message["Subject"] for m in told][-1] == "Your password was changed"


def test_an_unconfirmed_address_gets_no_notice(mail_app, clock, smtp):
    with mail_app.app_context():
        User.update(email=None).where(User.username == "bob").execute()
    browser = signed_in(mail_app, clock, "bob")
    ask_for(browser, "bob.new@example.com")
    confirm_mail(smtp, "bob.new@example.com")
    change_password(browser, PASSWORD, "another password 123")
    assert sender.wait_idle(5)
    assert [n.kind for n in notices(mail_app)] == ["confirm_address"]
    assert len(smtp.received) == 1


def test_the_password_comes_first(mail_app, clock, smtp):
    browser = signed_in(mail_app, clock)
    response = ask_for(browser, NEW, password="not the password")
    assert response.status_code == 200 and "That password is not right." in response.get_data(
        as_text=True
    )
    assert user_row(mail_app).pending_email is None and links(mail_app) == []
    assert ("reauth", "failed", "alice", "alice", "password") in audit_rows(mail_app, "reauth")
    assert sender.wait_idle(5) and smtp.received == []


def test_a_link_expires(mail_app, clock, smtp):
    browser = signed_in(mail_app, clock)
    ask_for(browser, NEW)
    _, link, token = confirm_mail(smtp, NEW)
    clock.advance(24 * 3600 - 1)
    browser = signed_in(mail_app, clock)  # the first session is long gone
    page = browser.get(path_of(link))
    assert page.status_code == 200  # a second before: still good
    clock.advance(1)
    page = browser.get(path_of(link))
    assert refused_page(page) and "This link has expired" in page.get_data(as_text=True)
    browser.get("/account/security")
    refused = browser.post("/account/email/confirm", {"token": token})
    assert refused.status_code == 400 and "expired" in refused.get_data(as_text=True)
    assert user_row(mail_app).email == OLD


def test_a_newer_change_replaces_the_earlier_link(mail_app, clock, smtp):
    browser = signed_in(mail_app, clock)
    ask_for(browser, "first@example.com")
    _, first, first_token = confirm_mail(smtp, "first@example.com")
    ask_for(browser, "second@example.com")
    _, second, _ = confirm_mail(smtp, "second@example.com")
    assert refused_page(browser.get(path_of(first)))
    browser.get("/account/security")
    assert browser.post("/account/email/confirm", {"token": first_token}).status_code == 400
    assert user_row(mail_app).email == OLD
    assert press_confirm(browser, second).status_code == 302
    assert user_row(mail_app).email == "second@example.com"


def test_an_administrators_change_replaces_the_users_link(mail_app, clock, smtp):
    browser = signed_in(mail_app, clock)
    ask_for(browser, NEW)
    _, link, token = confirm_mail(smtp, NEW)
    assert cli(mail_app, "user", "email", "alice", "set.by.admin@example.com").exit_code == 0
    alice = user_row(mail_app)
    assert (alice.email, alice.pending_email) == ("set.by.admin@example.com", None)
    assert links(mail_app) == []
    browser.get("/account/security")
    assert browser.post("/account/email/confirm", {"token": token}).status_code == 400
    assert user_row(mail_app).email == "set.by.admin@example.com"


def test_a_link_works_only_for_its_own_account(mail_app, clock, smtp):
    alice = signed_in(mail_app, clock)
    ask_for(alice, NEW)
    _, link, token = confirm_mail(smtp, NEW)
    bob = signed_in(mail_app, clock, "bob")
    assert refused_page(bob.get(path_of(link)))
    assert bob.post("/account/email/confirm", {"token": token}).status_code == 400
    assert user_row(mail_app, "bob").email == "bob@example.com"
    assert user_row(mail_app).email == OLD
    assert press_confirm(alice, link).status_code == 302  # still good for alice


def test_someone_signed_out_is_sent_to_sign_in_and_comes_back_to_the_link(mail_app, clock, smtp):
    ask_for(signed_in(mail_app, clock), NEW)
    _, link, _ = confirm_mail(smtp, NEW)
    stranger = Browser(mail_app, clock)
    response = stranger.get(path_of(link))
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    assert user_row(mail_app).email == OLD
    phone = Browser(mail_app, clock)
    login_page = phone.get(path_of(link)).headers["Location"]
    phone.get(login_page)
    signed = phone.post(login_page, {"username": "alice", "password": PASSWORD})
    assert signed.headers["Location"] == path_of(link)
    assert press_confirm(phone, link).status_code == 302
    assert user_row(mail_app).email == NEW


def test_the_confirmation_needs_csrf_and_a_token(mail_app, clock, smtp):
    browser = signed_in(mail_app, clock)
    ask_for(browser, NEW)
    _, link, token = confirm_mail(smtp, NEW)
    browser.get(path_of(link))
    forged = browser.post("/account/email/confirm", {"token": token}, csrf=False)
    assert forged.status_code == 400
    for bad in ("", "x" * 500, token[:-1], token + "x"):
        assert browser.post("/account/email/confirm", {"token": bad}).status_code == 400
    assert refused_page(browser.get("/account/email/confirm"))
    assert user_row(mail_app).email == OLD
    assert press_confirm(browser, link).status_code == 302


def test_the_confirmation_page_sends_no_referer_and_is_not_cached(mail_app, clock, smtp):
    browser = signed_in(mail_app, clock)
    ask_for(browser, NEW)
    _, link, _ = confirm_mail(smtp, NEW)
    page = browser.get(path_of(link))
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert "alice.new@example.com" in page.get_data(as_text=True)


def test_the_link_is_built_from_the_portal_url_when_one_is_set(tmp_path, clock, smtp):
    app = make_app(
        tmp_path, clock, GATEWAY_PORTAL_URL="https://auth.example.com", **mail_config(smtp)
    )
    browser = signed_in(app, clock)
    ask_for(browser, NEW, password=PASSWORD)
    _, link, _ = confirm_mail(smtp, NEW)
    assert link.startswith("https://auth.example.com/account/email/confirm?token=")
    sender.wait_idle(5)


def test_a_user_can_cancel_the_change(mail_app, clock, smtp):
    browser = signed_in(mail_app, clock)
    ask_for(browser, NEW)
    _, link, _ = confirm_mail(smtp, NEW)
    browser.get("/account/security")
    browser.post("/account/email/cancel")
    assert user_row(mail_app).pending_email is None and links(mail_app) == []
    assert refused_page(browser.get(path_of(link)))
    assert user_row(mail_app).email == OLD


def test_at_most_five_links_an_hour(mail_app, clock, smtp):
    browser = signed_in(mail_app, clock)
    for number in range(emails.LINKS_PER_HOUR):
        assert ask_for(browser, f"n{number}@example.com").status_code == 302
    refused = ask_for(browser, "victim@example.com")
    assert "At most 5 confirmation links are sent an hour" in refused.get_data(as_text=True)
    assert user_row(mail_app).pending_email == "n4@example.com"
    clock.advance(3601)
    browser = signed_in(mail_app, clock)
    assert ask_for(browser, "victim@example.com").status_code == 302
    assert user_row(mail_app).pending_email == "victim@example.com"
    sender.wait_idle(10)


def test_asking_for_the_current_address_changes_nothing(mail_app, clock, smtp):
    response = ask_for(signed_in(mail_app, clock), OLD)
    assert "already your address" in response.get_data(as_text=True)
    assert user_row(mail_app).pending_email is None and links(mail_app) == []
    assert sender.wait_idle(5) and smtp.received == []


def test_without_mail_a_user_cannot_strand_a_new_address(app, clock):
    without_mail = signed_in(app, clock)
    response = ask_for(without_mail, NEW)
    assert "This site sends no mail" in response.get_data(as_text=True)
    assert user_row(app).pending_email is None and links(app) == []


# --- The time zone of mails ------------------------------------------------------------------


def test_the_time_zone_is_saved_checked_and_told_in_mails(mail_app, clock, smtp):
    browser = signed_in(mail_app, clock)
    browser.get("/account/security")
    for bad in ("Mars/Olympus_Mons", "../../etc/passwd", "Europe/Paris\r\nX: y", "x" * 100):
        browser.post("/account/time-zone", {"time_zone": bad})
        assert user_row(mail_app).time_zone is None
    assert "Choose a time zone from the list" in " ".join(admin_messages(browser))
    browser.get("/account/security")
    browser.post("/account/time-zone", {"time_zone": "America/New_York"})
    assert user_row(mail_app).time_zone == "America/New_York"
    browser.get("/account/security")
    browser.post("/account/time-zone", {"time_zone": "America/New_York"})  # the same again
    assert audit_rows(mail_app, "time_zone_set") == [
        ("time_zone_set", "ok", "alice", "alice", "America/New_York")
    ]
    assert 'value="America/New_York"' in browser.page("/account/security")
    ask_for(browser, NEW)
    mail, _, _ = confirm_mail(smtp, NEW)
    assert "2026-11-28 07:00 EST" in mail.text  # 12:00 UTC in New York
    browser.get("/account/security")
    browser.post("/account/time-zone", {"time_zone": ""})
    assert user_row(mail_app).time_zone is None  # empty: UTC again


# --- Administrators -------------------------------------------------------------------------


def test_the_users_page_sets_and_removes_an_address_after_a_step_up(mail_app, clock, smtp):
    admin = signed_in_admin(mail_app, clock)
    secret = admin.secret
    assert "alice@example.com" in admin.page("/admin/users")
    page = admin.page("/admin/users/alice/email")
    assert "Now: <strong>alice@example.com</strong>" in page and 'id="step-up-note"' in page
    refused = admin.post("/admin/users/alice/email", {"email": "a2@example.com"})
    assert refused.headers["Location"].startswith("/admin/step-up")
    assert user_row(mail_app).email == OLD
    step_up(admin, secret)
    admin.get("/admin/users/alice/email")
    bad = admin.post("/admin/users/alice/email", {"email": "a2@example.com\r\nBcc: x@example.com"})
    assert bad.status_code == 200 and 'class="field-error"' in bad.get_data(as_text=True)
    assert user_row(mail_app).email == OLD
    done = admin.post("/admin/users/alice/email", {"email": "a2@example.com"})
    assert done.headers["Location"] == "/admin/users/alice/email"
    assert admin_messages(admin) == ["The address of alice is now a2@example.com."]
    assert user_row(mail_app).email == "a2@example.com"
    assert ("email_set", "ok", "alice", "root", "a2@example.com") in audit_rows(mail_app)
    [told] = mails_to(smtp, OLD)
    assert "An administrator changed" in told.text and "a2@example.com" in told.text

    admin.get("/admin/users/alice/email")
    admin.post("/admin/users/alice/email/remove")
    assert admin_messages(admin) == ["alice has no address now: they get no notices."]
    assert user_row(mail_app).email is None
    assert ("email_removed", "ok", "alice", "root", None) in audit_rows(mail_app)


def test_removing_an_address_needs_a_step_up_too(mail_app, clock):
    admin = signed_in_admin(mail_app, clock)
    admin.get("/admin/users/alice/email")
    response = admin.post("/admin/users/alice/email/remove")
    assert response.headers["Location"].startswith("/admin/step-up")
    assert user_row(mail_app).email == OLD


def test_the_api_shows_the_confirmed_and_the_pending_address(mail_app, clock, smtp):
    ask_for(signed_in(mail_app, clock), NEW)
    token = api_token(mail_app)
    body = api_request(mail_app, "GET", "/api/v1/users?q=alice", token).get_json()
    [alice] = body["users"]
    assert (alice["email"], alice["email_pending"]) == (OLD, NEW)


# --- Remote-Email ----------------------------------------------------------------------------


def test_remote_email_is_the_confirmed_address_only(tmp_path, clock):
    from support.gateway import PortalBrowser, ask_nginx

    app = make_gateway_app(tmp_path, clock)
    browser = PortalBrowser(app, clock)
    browser.login("alice")
    token = browser.session_token()
    url = "http://wiki.example.test/page"
    assert "Remote-Email" not in ask_nginx(app, url, token).headers
    with app.app_context():
        User.update(pending_email="pending@example.com").where(User.username == "alice").execute()
    assert "Remote-Email" not in ask_nginx(app, url, token).headers  # not confirmed
    assert cli(app, "user", "email", "alice", "alice@example.com").exit_code == 0
    response = ask_nginx(app, url, token)
    assert response.headers["Remote-Email"] == "alice@example.com"
    assert response.headers["Remote-User"] == "alice"
    assert "Remote-Email" not in ask_nginx(app, "https://public.example.test/", token).headers


# --- Pruning ---------------------------------------------------------------------------------


def test_prune_deletes_used_and_expired_links_only(mail_app, clock, smtp):
    alice = signed_in(mail_app, clock)
    ask_for(alice, NEW)
    _, link, _ = confirm_mail(smtp, NEW)
    press_confirm(alice, link)  # used
    bob = signed_in(mail_app, clock, "bob")
    ask_for(bob, "bob.new@example.com")  # expires in 24 h
    clock.advance(3600)
    root = signed_in(mail_app, clock, "root")
    ask_for(root, "root.new@example.com")  # expires an hour later
    sender.wait_idle(5)
    with mail_app.app_context():
        assert maintenance.prune(clock.now())["email_links"] == 1
    clock.advance(23 * 3600)
    with mail_app.app_context():
        assert maintenance.prune(clock.now())["email_links"] == 1  # bob's
    assert [row.address for row in links(mail_app)] == ["root.new@example.com"]
