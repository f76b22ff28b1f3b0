"""The forms, with Flask-WTF (CSRF on every one). Fields validate shape only; the
services decide what a value means."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import InputRequired, Length

from . import passwords, settings, totp


class SingleValueStringField(StringField):
    """A text field that refuses to pick one of several values sent under its name."""

    def process_formdata(self, valuelist):
        if len(valuelist) > 1:
            self.data = None
            raise ValueError("Send this field once.")
        super().process_formdata(valuelist)


class LoginForm(FlaskForm):
    username = SingleValueStringField("Username", validators=[InputRequired(), Length(max=150)])
    password = PasswordField(
        "Password", validators=[InputRequired(), Length(max=passwords.MAX_LENGTH)]
    )


class CodeForm(FlaskForm):
    code = SingleValueStringField(
        "6-digit code from your authenticator app",
        validators=[InputRequired(), Length(max=totp.MAX_CODE_INPUT)],
    )


class MfaMethodForm(FlaskForm):
    mfa_method = SelectField(
        "Multi-Factor Authentication method", choices=dict(settings.MFA_METHODS)
    )
