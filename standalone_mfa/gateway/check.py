"""The check a proxy makes before each request to a protected app: who is behind this
cookie, and what do the rules say for this request and this person.

It runs for every request of every protected app, static files included, so it is
built for that: a rule that needs no identity (bypass, deny for all) answers without
the database; otherwise one prepared statement reads the session, its user (with
the confirmed address), the user's groups and the site's MFA method together. It
never creates a session and writes only when something is due: the session's
`last_seen_at`, at most once a minute (so the idle timeout still counts protected
apps as use), and a denial's audit row, at most one a minute per person (or nobody)
and deciding rule, and one a minute for malformed checks (an audit row per proxied
request, or per host a stranger invents, would drown the log; SC-69). A request an
app could read in several ways (`Original.asked`: the path's spellings, the method
as sent and upper-cased) is judged in each, and the strictest answer kept (SC-66,
SC-48); most requests have one. Revocation is immediate:
nothing is cached, so a session signed out, reset or ended on any instance fails its
very next check.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass

from peewee import JOIN

from ..core import audit, crypto
from ..core.audit import Client
from ..core.db import UNAVAILABLE, Prepared
from ..core.models import Setting, User, UserGroup, WebSession
from ..directory import settings
from ..directory.groups import groups_of
from ..directory.users import find_user, normalize_username
from ..factors import app_passwords
from ..signin import lifetimes, methods, policy
from ..signin.sessions import LAST_SEEN_RESOLUTION, MAX_TOKEN_LENGTH
from ..signin.state import AUTHENTICATED
from .origin import BadOrigin, Original, from_url
from .rules import (
    BYPASS,
    DENY,
    ONE_FACTOR,
    PHISHING_RESISTANT,
    TWO_FACTOR,
    AccessControl,
    Rule,
    Verdict,
)

ALLOW = "allow"
REFUSE = "deny"
SIGN_IN = "sign_in"  # the browser must sign in, or pass the second factor, first
CHALLENGE = "challenge"  # 401 with a Basic challenge: a client that cannot sign in on a page
DECISIONS = (ALLOW, REFUSE, SIGN_IN, CHALLENGE)
# Which of two answers is stricter: the outcome, then the policy that gave it.
_OUTCOME_RANK = {ALLOW: 0, SIGN_IN: 1, REFUSE: 2}
_POLICY_RANK = {BYPASS: 0, ONE_FACTOR: 1, TWO_FACTOR: 2, PHISHING_RESISTANT: 3, DENY: 4}
_SIGNED_IN_POLICIES = (ONE_FACTOR, TWO_FACTOR, PHISHING_RESISTANT)


@dataclass(frozen=True)
class Identity:
    """The signed-in person behind a cookie, as the check needs them."""

    session_id: int
    username: str
    groups: tuple[str, ...]
    second_factor: bool
    email: str | None = None  # the confirmed address only (sent as Remote-Email)
    # The session passed a WebAuthn ceremony (`signin.methods.phishing_resistant`).
    phishing_resistant: bool = False


@dataclass(frozen=True)
class Decision:
    outcome: str  # ALLOW, REFUSE or SIGN_IN
    identity: Identity | None  # sent to the app as Remote-User (None: nothing is)
    rule: Rule | None  # which rule decided (None: the default policy)
    policy: str


_MFA_METHOD = Setting.select(Setting.value).where(Setting.key == "mfa_method")
_IDENTITY = Prepared(
    lambda slot: (
        WebSession.select(
            WebSession.id,
            WebSession.state,
            WebSession.created_at,
            WebSession.last_seen_at,
            WebSession.second_factor_at,
            WebSession.signin_methods,
            User.username,
            User.email,
            UserGroup.name,
            _MFA_METHOD.alias("mfa_method"),
        )
        .join(User)
        .join(UserGroup, JOIN.LEFT_OUTER, on=(UserGroup.user == User.id))
        .where(WebSession.token_hash == slot("token_hash"))
        .order_by(UserGroup.name)
        .tuples()
    )
)
_TOUCH = Prepared(
    lambda slot: WebSession.update(
        {WebSession.last_seen_at: slot("at", WebSession.last_seen_at)}
    ).where(
        (WebSession.id == slot("id"))
        & (WebSession.last_seen_at < slot("at", WebSession.last_seen_at))
    )
)


@dataclass(frozen=True)
class _Times:
    created_at: dt.datetime
    last_seen_at: dt.datetime


def identity(token: str | None, at: dt.datetime) -> Identity | None:
    """The signed-in person whose session cookie holds `token` at `at`, or None (no
    such session, ended, expired, not past every step, or signed in with the password
    alone while the site requires a second factor)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    rows = _IDENTITY.run(token_hash=crypto.hash_token(token))
    if not rows:
        return None
    (
        session_id,
        state,
        created_at,
        last_seen_at,
        second_factor_at,
        recorded,
        username,
        email,
        _,
        method,
    ) = rows[0]
    created_at, last_seen_at = _datetime(created_at), _datetime(last_seen_at)
    if state != AUTHENTICATED or not lifetimes.session_alive(_Times(created_at, last_seen_at), at):
        return None
    groups = tuple(row[8] for row in rows if row[8] is not None)
    if (
        second_factor_at is None
        and method not in (None, settings.DISABLED)
        and not _password_alone(username, groups, at)
    ):
        return None  # the portal ends this session at its next request (`guard`)
    if at - last_seen_at >= LAST_SEEN_RESOLUTION:
        _touch(session_id, at)
    resistant = methods.phishing_resistant(methods.parse(recorded))
    return Identity(session_id, username, groups, second_factor_at is not None, email, resistant)


def _password_alone(username: str, groups: tuple[str, ...], at: dt.datetime) -> bool:
    """Whether the MFA policy lets this user's password-only session stay (outside the
    scope, or within their grace), as the portal's guard decides. Only such sessions
    of a site that requires MFA come here: the hot path reads nothing more."""
    user = find_user(username)
    if user is None:
        return False
    try:
        return policy.requirement_kept(user, at, user_groups=groups).password_alone
    except UNAVAILABLE:  # the grace could not be kept now: judged as it is, kept next time
        return policy.requirement_of(user, at, user_groups=groups).password_alone


def _datetime(value) -> dt.datetime:
    # Tuples skip the field's conversion; SQLite hands back text.
    return WebSession.last_seen_at.python_value(value) if isinstance(value, str) else value


def _touch(session_id: int, at: dt.datetime) -> None:
    """Count this check as the session's use (once a minute). A database too busy to
    take the write does not turn an allowed request away: the next check retries."""
    with contextlib.suppress(UNAVAILABLE):
        _TOUCH.run(at=at, id=session_id)


def decide(
    access: AccessControl, original: Original, token: str | None, at: dt.datetime
) -> Decision:
    """What to answer the proxy for `original`, asked with session cookie `token`: the
    strictest answer over every way an app could read the request."""
    host = original.host
    asked = original.asked
    verdicts = [access.verdict(host, resource, method) for resource, method in asked]
    if all(v.policy == BYPASS and not v.needs_identity for v in verdicts):
        return Decision(ALLOW, None, verdicts[0].rule, BYPASS)  # no need to know who
    person = identity(token, at)
    return strictest(
        _decided(access, host, resource, method, verdict, person)
        for (resource, method), verdict in zip(asked, verdicts, strict=True)
    )


def strictest(decisions) -> Decision:
    """The strictest of several answers: refused over sign in over allowed, then the
    stricter policy (the first of equals)."""
    found = None
    for decision in decisions:
        if found is None or _rank(decision) > _rank(found):
            found = decision
    return found


def _rank(decision: Decision) -> tuple[int, int]:
    return _OUTCOME_RANK[decision.outcome], _POLICY_RANK[decision.policy]


def audit_denial(decision: Decision, original: Original, client: Client) -> None:
    """The audit row of a refused request: at most one a minute per person (nobody
    counts as one) and deciding rule, so that hosts or paths a stranger invents
    cannot grow the log, while each rule that refuses someone is seen."""
    username = decision.identity.username if decision.identity else None
    if not audit.cap("gateway_denied").due(
        (username, decision.rule.number if decision.rule else None)
    ):
        return
    rule = f"rule {decision.rule.number}" if decision.rule else "default policy"
    detail = f"{original.method[:20]} {original.host}{original.path[:200]} ({rule})"
    with contextlib.suppress(UNAVAILABLE):  # the refusal stands; only its row is lost
        audit.record("gateway_denied", "denied", username=username, detail=detail, client=client)


def audit_malformed(reason: str, client: Client) -> bool:
    """The audit row of a check whose proxy headers do not describe a request (SC-65):
    one a minute at most, naming what was wrong (fixed words, never the client's
    text). Whether it was written (the caller logs the same line)."""
    if not audit.cap("gateway_malformed").due("malformed"):
        return False
    with contextlib.suppress(UNAVAILABLE):
        audit.record("gateway_refused", "malformed", detail=reason, client=client)
    return True


def asks_phishing_resistance(access: AccessControl, url: str, username: str, groups) -> bool:
    """Whether a `phishing_resistant` rule sends this user, signed in with both factors
    but through no WebAuthn ceremony, to sign in for `url`: the portal's sign-in page
    then offers the ceremony. The browser came back with the URL alone, so a GET is
    judged, and a POST (a rule on the methods that change things)."""
    person = Identity(0, username, tuple(groups), True)
    for method in ("GET", "POST"):
        try:
            original = from_url(url, method)
        except BadOrigin:
            return False
        decision = _judged(access, original, person)
        if decision.outcome == SIGN_IN and decision.policy == PHISHING_RESISTANT:
            return True
    return False


@dataclass(frozen=True)
class Explanation:
    """What the rules do with one URL (the admin page's "test a URL" box): for nobody
    signed in, and for one user signed in with the password alone, with both factors,
    and through a WebAuthn ceremony (a passkey, or a security key). Each answer is
    (outcome, rule or None for the default policy, policy)."""

    original: Original
    anonymous: Decision
    username: str | None = None
    groups: tuple[str, ...] = ()
    password_only: Decision | None = None
    both_factors: Decision | None = None
    phishing_resistant: Decision | None = None


def explain(access: AccessControl, original: Original, username: str | None = None) -> Explanation:
    """The decisions `decide` would take for `original`, without any cookie: the same
    code, given the person instead of finding them."""
    anonymous = _judged(access, original, None)
    if username is None:
        return Explanation(original, anonymous)
    user = find_user(username)
    groups = groups_of(user) if user else ()
    return Explanation(
        original,
        anonymous,
        username,
        groups,
        _judged(access, original, Identity(0, username, groups, False)),
        _judged(access, original, Identity(0, username, groups, True)),
        _judged(access, original, Identity(0, username, groups, True, None, True)),
    )


def _judged(access: AccessControl, original: Original, person: Identity | None) -> Decision:
    host = original.host
    return strictest(
        _decided(access, host, resource, method, access.verdict(host, resource, method), person)
        for resource, method in original.asked
    )


def _decided(
    access: AccessControl,
    host: str,
    resource: str,
    method: str,
    verdict: Verdict,
    person: Identity | None,
) -> Decision:
    """The answer for `person` (None: nobody signed in) to one reading of a request,
    given the rules' verdict for nobody. That verdict holds for everyone unless its
    rule names subjects: only then are the rules read again, with the person."""
    if person is None:
        if verdict.needs_identity or verdict.policy in _SIGNED_IN_POLICIES:
            return Decision(SIGN_IN, None, verdict.rule, verdict.policy)
        outcome = ALLOW if verdict.policy == BYPASS else REFUSE
        return Decision(outcome, None, verdict.rule, verdict.policy)
    if verdict.needs_identity:
        verdict = access.verdict(host, resource, method, person.username, frozenset(person.groups))
    if verdict.policy == DENY:
        return Decision(REFUSE, person, verdict.rule, verdict.policy)
    if not satisfies(verdict.policy, person.second_factor, person.phishing_resistant):
        return Decision(SIGN_IN, person, verdict.rule, verdict.policy)
    shown = None if verdict.policy == BYPASS else person
    return Decision(ALLOW, shown, verdict.rule, verdict.policy)


def satisfies(policy: str, second_factor: bool, phishing_resistant: bool) -> bool:
    """Whether a signed-in session passes a signed-in policy (a rule's, or an OpenID
    client's): `two_factor` needs the second factor, `phishing_resistant` a WebAuthn
    ceremony; `one_factor` (and `bypass`) any session."""
    if policy == TWO_FACTOR:
        return second_factor
    if policy == PHISHING_RESISTANT:
        return phishing_resistant
    return True


# --- App passwords: clients that cannot follow the sign-in page ----------------------------


@dataclass(frozen=True)
class BasicCredentials:
    """What a client sent as `Authorization: Basic …` (the web layer decodes it)."""

    username: str
    password: str


def with_app_password(
    access: AccessControl,
    original: Original,
    decision: Decision,
    credentials: BasicCredentials | None,
    *,
    browser: bool,
    client: Client,
    at: dt.datetime,
) -> Decision:
    """The answer for a request that `decide` sends to sign in, on a rule with
    `"app_passwords": true` (any other decision is returned as it is: a session that
    passes, or is refused, is judged as everywhere else, and only these rules ever
    read an app password).

    - Basic credentials: the app password decides, as a session of its owner would
      (the same rules, subjects and groups); a wrong, revoked or throttled one, or one
      that is not enough for the rule, is a CHALLENGE (401), never a redirect that such
      a client would follow into a sign-in page forever.
    - No credentials: a browser (`browser`: it accepts HTML and sent no Authorization)
      is sent to sign in as before; any other client gets the CHALLENGE.

    An app password counts as the factors proven when it was made: one made after a
    code passes `two_factor` rules, one made with the password alone only `one_factor`
    ones, and that one only while the MFA policy lets its owner use the password alone
    (as a session signed in with the password alone)."""
    rule = decision.rule
    if decision.outcome != SIGN_IN or rule is None or not rule.app_passwords:
        return decision
    challenge = Decision(CHALLENGE, None, rule, decision.policy)
    if credentials is None:
        return decision if browser else challenge
    username = normalize_username(credentials.username)
    holder = app_passwords.verify(username, credentials.password, client, at).holder
    if holder is None:
        return challenge
    if (
        not holder.two_factor
        and holder.mfa_method not in (None, "disabled")
        and not _password_alone(holder.username, holder.groups, at)
    ):
        return challenge
    person = Identity(0, holder.username, holder.groups, holder.two_factor, holder.email)
    host = original.host
    readings = [
        _decided(access, host, resource, method, access.verdict(host, resource, method), person)
        for resource, method in original.asked
    ]
    answer = strictest(readings)
    if answer.outcome == REFUSE:
        return answer  # the rules refuse this person, whatever they sent
    if answer.outcome == ALLOW and all(
        d.rule is not None and d.rule.app_passwords for d in readings
    ):
        return answer
    return challenge  # a rule that decides for this person does not take app passwords
