"""The forms, with Flask-WTF (CSRF on every one). Fields validate shape only; the
services decide what a value means."""

from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.csrf.core import CSRFTokenField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    EqualTo,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)

from ..accounts import emails
from ..core import addresses, messages
from ..directory import groups, settings
from ..factors import app_passwords, passwords, recovery, totp, webauthn
from ..gateway import rules
from ..oidc import clients


def pairs(items) -> list[SelectChoice]:
    """(value, label) pairs as WTForms' choices (tuples are deprecated there)."""
    return [SelectChoice(value, label) for value, label in items]


class _TokenWhenShown(CSRFTokenField):
    """Flask-WTF's CSRF token field, whose token is made when the form is shown rather
    than when it is built: a form that is only read (a POST answered by a redirect,
    such as the code step) signs no token it never sends. Checked as before."""

    def process(self, *args, **kwargs):
        # The hidden field's own processing, without CSRFTokenField's eager token.
        super(CSRFTokenField, self).process(*args, **kwargs)

    @property
    def current_token(self) -> str:
        return self.csrf_impl.generate_csrf_token(self)


class _TokenWhenShownCSRF(FlaskForm.Meta.csrf_class):  # Flask-WTF's, with the field above
    field_class = _TokenWhenShown


class PortalForm(FlaskForm):
    """Every form of the portal: Flask-WTF's, CSRF and all (see `_TokenWhenShown`)."""

    class Meta:
        csrf_class = _TokenWhenShownCSRF


class SingleValueStringField(StringField):
    """A text field that refuses to pick one of several values sent under its name."""

    def process_formdata(self, valuelist):
        if len(valuelist) > 1:
            self.data = None
            raise ValueError(_l("Send this field once."))
        super().process_formdata(valuelist)


class LoginForm(PortalForm):
    username = SingleValueStringField(
        _l("Username"), validators=[InputRequired(), Length(max=150)]
    )
    password = PasswordField(
        _l("Password"), validators=[InputRequired(), Length(max=passwords.MAX_LENGTH)]
    )


class CodeForm(PortalForm):
    code = SingleValueStringField(
        _l("6-digit code from your authenticator app"),
        validators=[InputRequired(), Length(max=totp.MAX_CODE_INPUT)],
    )


class VerifyForm(CodeForm):
    remember_device = BooleanField(_l("Remember this device"))


class RecoveryCodeForm(PortalForm):
    recovery_code = SingleValueStringField(
        _l("Recovery code"), validators=[InputRequired(), Length(max=recovery.MAX_INPUT)]
    )


class ButtonForm(PortalForm):
    """A form that is only a button (and its CSRF token)."""


class WebAuthnForm(PortalForm):
    """A passkey ceremony's answer: `credential.toJSON()`, written by static/webauthn.js."""

    # Labelled: an unlabelled field asks WTForms' own catalogue for a label, which
    # Flask-WTF loads from disk once per request (a passkey sign-in is a hot path).
    credential = HiddenField(
        "credential", validators=[InputRequired(), Length(max=webauthn.ANSWER_MAX)]
    )


class NewKeyForm(WebAuthnForm):
    """A new passkey or security key: its name and kind, then the browser's answer."""

    name = SingleValueStringField(
        _l("Name of the key"), validators=[InputRequired(), Length(max=webauthn.NAME_MAX)]
    )
    kind = RadioField(
        _l("Kind of key"),
        choices=[
            SelectChoice(webauthn.PASSKEY, _l("A passkey: signs you in without a password")),
            SelectChoice(webauthn.SECURITY_KEY, _l("A security key: used after your password")),
        ],
        default=webauthn.PASSKEY,
    )


class RenameKeyForm(PortalForm):
    name = SingleValueStringField(
        _l("New name"), validators=[InputRequired(), Length(max=webauthn.NAME_MAX)]
    )


class MfaSettingsForm(PortalForm):
    mfa_method = SelectField(
        _l("Multi-Factor Authentication method"), choices=pairs(settings.MFA_METHODS.items())
    )
    remember_days = IntegerField(
        _l("Remember devices for N days"),
        # Left out of the post: unchanged (older clients of this form send only the method).
        validators=[Optional(), NumberRange(min=0, max=settings.REMEMBER_DAYS_MAX)],
    )
    # Who must use it, and for how long a required set-up may be postponed. Left out
    # of the post (older clients): unchanged, as remember_days.
    mfa_required_for = RadioField(
        _l("Required for"),
        choices=pairs(settings.REQUIRED_FOR.items()),
        validators=[Optional()],
    )
    mfa_groups = SingleValueStringField(
        _l("Groups (comma-separated)"), validators=[Optional(), Length(max=2000)]
    )
    mfa_grace_days = IntegerField(
        _l("Grace period in days"),
        validators=[Optional(), NumberRange(min=0, max=settings.GRACE_DAYS_MAX)],
    )

    def group_names(self) -> tuple[str, ...]:
        """The names in `mfa_groups` (spaces around commas dropped, empty ones too)."""
        return tuple(
            sorted({name.strip() for name in (self.mfa_groups.data or "").split(",")} - {""})
        )

    def validate_mfa_groups(self, field):
        bad = [name for name in self.group_names() if not groups.GROUP_PATTERN.fullmatch(name)]
        if bad:
            raise ValidationError(messages.text("bad_mfa_groups", names=", ".join(bad[:5])))

    def validate_mfa_required_for(self, field):
        if field.data == settings.GROUPS and not self.group_names():
            raise ValidationError(messages.text("name_a_group"))


def _password(label):
    return PasswordField(label, validators=[InputRequired(), Length(max=passwords.MAX_LENGTH)])


class ConfirmIdentityForm(PortalForm):
    """The password and a current code (or, where allowed, a recovery code)."""

    password = _password(_l("Your password"))
    code = SingleValueStringField(
        _l("6-digit code from your authenticator app"),
        validators=[Length(max=totp.MAX_CODE_INPUT)],
    )
    recovery_code = SingleValueStringField(
        _l("Or a recovery code"), validators=[Length(max=recovery.MAX_INPUT)]
    )
    # In place of a code: one of the user's own keys (static/webauthn.js writes it).
    credential = HiddenField(
        "credential", validators=[Optional(), Length(max=webauthn.ANSWER_MAX)]
    )


class NewAppPasswordForm(PortalForm):
    """A name for a new app password, then the password and (with an authenticator) a
    current code: the re-authentication every Account security change asks for."""

    name = SingleValueStringField(
        _l("Name (which app or device will use it)"),
        validators=[InputRequired(), Length(max=4 * app_passwords.NAME_MAX_LENGTH)],
    )
    password = _password(_l("Your password"))
    code = SingleValueStringField(
        _l("6-digit code from your authenticator app"),
        validators=[Length(max=totp.MAX_CODE_INPUT)],
    )
    credential = HiddenField(
        "credential", validators=[Optional(), Length(max=webauthn.ANSWER_MAX)]
    )


class RevokeAppPasswordForm(PortalForm):
    """Revoke one app password (its name, a hidden field)."""

    name = HiddenField(validators=[InputRequired(), Length(max=4 * app_passwords.NAME_MAX_LENGTH)])


class ChangePasswordForm(PortalForm):
    current_password = _password(_l("Current password"))
    new_password = PasswordField(
        _l("New password"),
        validators=[
            InputRequired(),
            Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH),
        ],
    )
    confirm_password = PasswordField(
        _l("New password again"),
        validators=[InputRequired(), EqualTo("new_password", _l("The new passwords differ."))],
    )


def _address(label):
    # Shape only: `core.addresses.normalise` decides what an address is (SC-37).
    return SingleValueStringField(
        label, validators=[InputRequired(), Length(max=addresses.MAX_LENGTH + 64)]
    )


class ChangeEmailForm(PortalForm):
    """A new address for the user's own notices: their password first."""

    current_password = _password(_l("Your password"))
    email = _address(_l("New email address"))


class ConfirmEmailForm(PortalForm):
    """The button of the confirmation page; the link's token rides in a hidden field,
    so that only this POST (never the GET a mail scanner makes) uses it up."""

    token = HiddenField(validators=[InputRequired(), Length(max=emails.MAX_TOKEN_LENGTH)])


class SavedLanguageForm(PortalForm):
    """The language saved on Account security: one of ours, or the browser's choice
    (checked by `i18n.supported`)."""

    language = SingleValueStringField(
        _l("Language of your pages and mails"), validators=[Optional(), Length(max=16)]
    )


class TimeZoneForm(PortalForm):
    time_zone = SingleValueStringField(
        _l("Time zone of your mails"),
        validators=[Optional(), Length(max=emails.MAX_TIME_ZONE_LENGTH)],
    )


# Administration (users, step-up, audit log).


class StepUpPasswordForm(PortalForm):
    password = PasswordField(
        _l("Your password"), validators=[InputRequired(), Length(max=passwords.MAX_LENGTH)]
    )


class NewUserForm(PortalForm):
    username = SingleValueStringField(
        _l("Username"), validators=[InputRequired(), Length(max=150)]
    )
    password = PasswordField(
        _l("Initial password (optional)"),
        validators=[Optional(), Length(max=passwords.MAX_LENGTH)],
    )


class GroupForm(PortalForm):
    """One group name: to add a user to it, or (a hidden field) to remove them."""

    group = SingleValueStringField(_l("Group name"), validators=[InputRequired(), Length(max=64)])


class AdminEmailForm(PortalForm):
    """An address an administrator gives a user (confirmed at once)."""

    email = _address(_l("Email address"))


class UserSearchForm(PortalForm):
    class Meta:
        csrf = False  # a GET search: it changes nothing

    q = StringField(_l("Search by username"), validators=[Optional(), Length(max=150)])


class AuditFilterForm(PortalForm):
    class Meta:
        csrf = False  # a GET filter: it changes nothing

    user = StringField(_l("User"), validators=[Optional(), Length(max=150)])
    event = SelectField(_l("Event type"), choices=[SelectChoice("", _l("All events"))], default="")
    start = DateField(_l("From (UTC)"), validators=[Optional()])
    end = DateField(_l("To (UTC)"), validators=[Optional()])

    def validate_end(self, field):
        if field.data and self.start.data and field.data < self.start.data:
            raise ValidationError(_l("The end date is before the start date."))


class LanguageForm(PortalForm):
    """The language picker: one of ours, checked by `i18n.supported`; and the page to
    go back to, checked by `safe_next_path`."""

    lang = SingleValueStringField(_l("Language"), validators=[InputRequired(), Length(max=16)])
    next = SingleValueStringField(validators=[Optional(), Length(max=2048)])


class AccessTestForm(PortalForm):
    """The "test a URL" box of the access rules page."""

    class Meta:
        csrf = False  # a GET question: it changes nothing

    url = StringField(
        _l("URL"), validators=[InputRequired(message=_l("Enter a URL.")), Length(max=2048)]
    )
    method = SelectField(
        _l("Method"),
        choices=[
            SelectChoice(m)
            for m in (
                *("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"),
                # WebDAV, CalDAV and CardDAV (SC-48): judged by the rules like the others.
                *("PROPFIND", "PROPPATCH", "MKCOL", "MKCALENDAR", "REPORT", "COPY", "MOVE"),
                *("LOCK", "UNLOCK"),
            )
        ],
        default="GET",
    )
    username = StringField(_l("As user (optional)"), validators=[Optional(), Length(max=150)])


# How people must have signed in to use an application, as the form and the list say it.
POLICY_CHOICES = (
    (rules.TWO_FACTOR, _l("Password and a second factor")),
    (rules.PHISHING_RESISTANT, _l("A passkey or security key (phishing-resistant)")),
    (rules.ONE_FACTOR, _l("Password alone, or more")),
)


class ApplicationForm(PortalForm):
    """An application to register as an OpenID client (Administration » Applications).
    Each field is checked by `oidc.clients`' own rule for it, so the error sits beside
    the field it is about, in the page's language."""

    name = SingleValueStringField(_l("Name"))
    redirect_uris = TextAreaField(_l("Redirect URIs, one per line"))
    public = BooleanField(_l("Public client: no secret (an app in the browser or on a phone)"))
    policy = SelectField(
        _l("How people must have signed in"),
        choices=pairs(POLICY_CHOICES),
        default=rules.TWO_FACTOR,
        validate_choice=False,  # validate_policy says it in the page's words
    )
    subjects = SingleValueStringField(_l("Who may use it (optional)"))
    offline = BooleanField(_l("May ask for refresh tokens (offline_access)"))
    post_logout_redirect_uris = TextAreaField(_l("After sign-out, back to (optional)"))
    launch_url = SingleValueStringField(_l("Link on the home page (optional)"))

    def validate_name(self, field):
        try:
            field.data = clients.check_name(field.data)
        except clients.ClientError:
            raise ValidationError(messages.text("client_bad_name")) from None
        if clients.by_name(field.data) is not None:
            raise ValidationError(messages.text("client_name_taken", name=field.data))

    def validate_redirect_uris(self, field):
        if not _checked_uris(field.data):
            raise ValidationError(messages.text("client_needs_uri"))

    def validate_post_logout_redirect_uris(self, field):
        _checked_uris(field.data)

    def validate_policy(self, field):
        try:
            clients.check_policy(field.data)
        except clients.ClientError:
            raise ValidationError(messages.text("client_bad_policy")) from None

    def validate_launch_url(self, field):
        field.data = (field.data or "").strip() or None
        if field.data:
            _checked_uri(field.data)

    def validate_subjects(self, field):
        for name in _words(field.data):
            try:
                clients.check_subjects([name])
            except clients.ClientError:
                raise ValidationError(messages.text("client_bad_subject", subject=name)) from None

    def client(self) -> dict:
        """The validated form as `oidc.clients.add`'s arguments."""
        return {
            "name": self.name.data,
            "redirect_uris": _checked_uris(self.redirect_uris.data),
            "public": self.public.data,
            "policy": self.policy.data,
            "subjects": _words(self.subjects.data),
            "offline": self.offline.data,
            "post_logout_redirect_uris": _checked_uris(self.post_logout_redirect_uris.data),
            "launch_url": self.launch_url.data,
        }


def _words(text) -> list[str]:
    """Subjects as people type them: separated by spaces or commas."""
    return [word for word in re.split(r"[\s,]+", text or "") if word]


def _checked_uri(uri: str) -> str:
    try:
        return clients.check_redirect_uri(uri)
    except clients.ClientError:
        raise ValidationError(messages.text("client_bad_uri", uri=uri)) from None


def _checked_uris(text) -> list[str]:
    """The addresses of a text area, one per line (blank lines and the spaces around
    each ignored), each checked as `oidc.clients` registers it."""
    uris = [_checked_uri(line.strip()) for line in (text or "").splitlines() if line.strip()]
    if len(uris) > clients.MAX_REDIRECT_URIS:
        raise ValidationError(
            messages.text("client_too_many_uris", most=clients.MAX_REDIRECT_URIS)
        )
    return uris
