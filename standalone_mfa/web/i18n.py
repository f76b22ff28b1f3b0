"""Languages: which one a page (or a mail) speaks, and the picker that chooses it.

The order (docs/languages.md): the user's saved language (Account security),
then the `lang` cookie the picker on the sign-in page sets, then the browser's
Accept-Language, then `BABEL_DEFAULT_LOCALE`. Only the locales we ship a complete
catalogue for are ever chosen; anything else falls through to the next source, so a
forged cookie or header can only pick one of them."""

from __future__ import annotations

from flask import (
    Blueprint,
    has_request_context,
    redirect,
    request,
    session,
    url_for,
)
from flask_babel import Babel, get_locale

from ..core import paths
from ..core.config import setting
from ..signin.destinations import safe_next_path
from .cookies import portal_cookie_policy
from .forms import LanguageForm
from .guard import STATE_HOME

# The locales with a catalogue, each named in its own language for the picker.
LOCALES = {"en": "English", "fr": "Français", "de": "Deutsch", "es": "Español"}
COOKIE = "lang"
COOKIE_DAYS = 365
# The catalogues: messages.pot and <locale>/LC_MESSAGES/messages.po; the .mo files
# Flask-Babel reads are compiled from them by the build (the wheel, `pip install -e .`)
# and by `make` (docs/languages.md).
TRANSLATIONS = paths.TRANSLATIONS

bp = Blueprint("i18n", __name__)
babel = Babel()


def supported(code: str | None) -> str | None:
    """`code` if it is one of ours (case and region ignored: fr-CA → fr), else None."""
    if not code:
        return None
    base = code.strip().replace("_", "-").split("-", 1)[0].lower()
    return base if base in LOCALES else None


def select_locale() -> str:
    """The language of this request (Flask-Babel asks once per request, lazily)."""
    if not has_request_context():  # a mail, rendered by the sender: see force_locale
        return _default()
    user = getattr(session, "user", None)
    saved = supported(getattr(user, "locale", None))
    if saved:
        return saved
    cookie = supported(request.cookies.get(portal_cookie_policy().name(COOKIE)))
    if cookie:
        return cookie
    return request.accept_languages.best_match(LOCALES) or _default()


def default() -> str:
    """The site's default language (`BABEL_DEFAULT_LOCALE`, if we ship it)."""
    return _default()


def _default() -> str:
    return supported(setting("BABEL_DEFAULT_LOCALE")) or "en"


def html_lang() -> str:
    """For `<html lang>`: the language the page is rendered in."""
    return str(get_locale() or _default())


@bp.route("/language", methods=["POST"])
def choose():
    """The picker: remember the choice in a cookie and go back to the page it was on
    (a path on this site only). Works without JavaScript: a form and a button."""
    form = LanguageForm()
    # Without a page to go back to: the page of the session's step (the guard's).
    back = safe_next_path(form.next.data) or url_for(STATE_HOME[session.state])
    response = redirect(back)
    chosen = supported(form.lang.data) if form.validate_on_submit() else None
    if chosen:
        portal_cookie_policy().set(response, COOKIE, chosen, max_age=COOKIE_DAYS * 86400)
    return response


def init_app(app) -> None:
    # Unset (the default): the catalogues shipped in the package.
    if not setting("BABEL_TRANSLATION_DIRECTORIES", app):
        app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS)
    babel.init_app(app, locale_selector=select_locale)
    # {% trans %} blocks lose their line breaks and indentation: one clean msgid.
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    app.jinja_env.globals.update(html_lang=html_lang, language_names=LOCALES)
    app.register_blueprint(bp)
    # A language without its compiled catalogue would be served in English: say so.
    for problem in paths.catalogue_problems():
        app.logger.warning(
            "Translations: %s; those pages fall back to English until it is compiled "
            "(make, or pip install . again).",
            problem,
        )
