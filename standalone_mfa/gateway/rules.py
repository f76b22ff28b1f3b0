"""The access rules (`ACCESS_CONTROL`): parsed and checked once at start, matched per
request in microseconds.

    {"default_policy": "deny",
     "rules": [{"domain": ["app.example.com", "*.example.com"],
                "resources": ["^/admin/.*$"], "methods": ["POST"],
                "subject": ["group:admins", "user:alice"], "policy": "two_factor"},
               {"domain": "dav.example.com", "policy": "one_factor", "app_passwords": true}]}

The first rule whose domain, resources (regular expressions searched in the path and
query), methods and subject all match decides; when none does, the default policy
(deny unless set). A rule without `resources`, `methods` or `subject` matches any.
`app_passwords` lets clients that cannot sign in on a page send an app password instead
of a session cookie (`gateway.check.with_app_password`). Anything malformed is refused
at start with a message naming the rule (SC-34): a gateway that guesses what a broken
rule meant fails open. Pure: no Flask, no database (what a user or group name may be
comes from `accounts`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.hostnames import is_host_name
from ..directory.groups import GROUP_PATTERN
from ..directory.users import USERNAME_PATTERN

BYPASS = "bypass"  # no sign-in at all (a public site or path)
ONE_FACTOR = "one_factor"  # signed in
TWO_FACTOR = "two_factor"  # signed in, and the session passed the second factor
# Signed in through a WebAuthn ceremony, which a look-alike page cannot relay: a passkey
# (the user verified), or the password and a security key (`signin.methods`).
PHISHING_RESISTANT = "phishing_resistant"
DENY = "deny"
POLICIES = (BYPASS, ONE_FACTOR, TWO_FACTOR, PHISHING_RESISTANT, DENY)
# Any RFC 9110 method token is a method (WebDAV's, CalDAV's, an app's own); these, the
# IANA HTTP Method Registry's, are the ones a rule may not name in another case: "get"
# in a rule would never match the GET every client sends.
REGISTERED_METHODS = frozenset(
    {
        *("ACL", "BASELINE-CONTROL", "BIND", "CHECKIN", "CHECKOUT", "CONNECT", "COPY"),
        *("DELETE", "GET", "HEAD", "LABEL", "LINK", "LOCK", "MERGE", "MKACTIVITY"),
        *("MKCALENDAR", "MKCOL", "MKREDIRECTREF", "MKWORKSPACE", "MOVE", "OPTIONS"),
        *("ORDERPATCH", "PATCH", "POST", "PRI", "PROPFIND", "PROPPATCH", "PUT", "QUERY"),
        *("REBIND", "REPORT", "SEARCH", "TRACE", "UNBIND", "UNCHECKOUT", "UNLINK"),
        *("UNLOCK", "UPDATE", "UPDATEREDIRECTREF", "VERSION-CONTROL"),
    }
)
MAX_METHOD_LENGTH = 64
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1," + str(MAX_METHOD_LENGTH) + "}")
RULE_KEYS = frozenset({"domain", "resources", "methods", "subject", "policy", "app_passwords"})
TOP_KEYS = frozenset({"default_policy", "rules"})


def is_method(value: str) -> bool:
    """Whether `value` is an HTTP method: an RFC 9110 token (of at most 64 characters)."""
    return bool(_TOKEN.fullmatch(value))


class RulesError(ValueError):
    """ACCESS_CONTROL is malformed; the message names the rule and what is wrong."""


@dataclass(frozen=True)
class Subject:
    kind: str  # "user" or "group"
    name: str

    def matches(self, username: str, groups: frozenset[str]) -> bool:
        return username == self.name if self.kind == "user" else self.name in groups

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Rule:
    number: int  # 1-based, as an administrator counts them
    domains: tuple[str, ...]  # as written, for the admin page
    exact: frozenset[str]
    suffixes: tuple[str, ...]  # ".example.com" for "*.example.com"
    resources: tuple[re.Pattern, ...]  # empty: any
    methods: frozenset[str]  # empty: any; matched exactly (methods are case-sensitive)
    subjects: tuple[Subject, ...]  # empty: anyone (and no one)
    policy: str
    # Clients may send an app password as Basic credentials (`gateway.check`).
    app_passwords: bool = False

    def matches_request(self, host: str, resource: str, method: str) -> bool:
        """Domain, resources and methods: everything but who asks."""
        if host not in self.exact and not host.endswith(self.suffixes):
            return False
        if self.methods and method not in self.methods:
            return False
        return not self.resources or any(p.search(resource) for p in self.resources)

    def matches_subject(self, username: str, groups: frozenset[str]) -> bool:
        return not self.subjects or any(s.matches(username, groups) for s in self.subjects)


@dataclass(frozen=True)
class Verdict:
    """What the rules say for one request: the policy, and which rule said it (None:
    the default policy). `needs_identity`: the rule names subjects, so an anonymous
    request must sign in before it can be decided."""

    policy: str
    rule: Rule | None
    needs_identity: bool = False


@dataclass(frozen=True)
class AccessControl:
    default_policy: str
    rules: tuple[Rule, ...]

    def verdict(
        self,
        host: str,
        resource: str,
        method: str,
        username: str | None = None,
        groups: frozenset[str] = frozenset(),
    ) -> Verdict:
        """The first matching rule's policy for this request and person (`username`
        None: nobody is signed in). A rule with a subject cannot be decided for nobody:
        the request must sign in first (then it is decided again, with the user)."""
        host = host.lower()
        for rule in self.rules:
            if not rule.matches_request(host, resource, method):
                continue
            if username is None:
                if rule.subjects:
                    return Verdict(rule.policy, rule, needs_identity=True)
                return Verdict(rule.policy, rule)
            if rule.matches_subject(username, groups):
                return Verdict(rule.policy, rule)
        return Verdict(self.default_policy, None)

    @property
    def uses_groups(self) -> bool:
        return any(s.kind == "group" for rule in self.rules for s in rule.subjects)


NO_RULES = AccessControl(DENY, ())


def subject(text: str) -> Subject:
    """`user:NAME` or `group:NAME`, as a rule's `subject` (and an OpenID client's)
    writes it. Named as the accounts name them: a subject no user or group could have
    is a typo, refused (RulesError)."""
    kind, _, name = text.partition(":")
    pattern = {"user": USERNAME_PATTERN, "group": GROUP_PATTERN}.get(kind)
    if pattern is None or not pattern.fullmatch(name):
        raise RulesError(f"subject {text!r} is not user:NAME or group:NAME (a valid name)")
    return Subject(kind, name)


def parse(value) -> AccessControl:
    """The rules of `ACCESS_CONTROL` (a dict, a JSON string, or None: no rules, deny
    everything). Raises RulesError naming the rule."""
    if value is None:
        return NO_RULES
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError as exc:
            raise RulesError(f"ACCESS_CONTROL is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RulesError("ACCESS_CONTROL must be an object with default_policy and rules")
    unknown = set(value) - TOP_KEYS
    if unknown:
        raise RulesError(f"ACCESS_CONTROL has unknown keys: {', '.join(sorted(unknown))}")
    default = value.get("default_policy", DENY)
    if default not in POLICIES:
        raise RulesError(
            f"ACCESS_CONTROL default_policy {default!r} is not one of {', '.join(POLICIES)}"
        )
    rules = value.get("rules", [])
    if not isinstance(rules, list):
        raise RulesError("ACCESS_CONTROL rules must be a list")
    return AccessControl(default, tuple(_rule(n, r) for n, r in enumerate(rules, start=1)))


def _rule(number: int, raw) -> Rule:
    def fail(what: str):
        raise RulesError(f"ACCESS_CONTROL rule {number}: {what}")

    if not isinstance(raw, dict):
        fail("must be an object")
    unknown = set(raw) - RULE_KEYS
    if unknown:
        fail(
            f"unknown keys {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(RULE_KEYS))})"
        )
    policy = raw.get("policy")
    if policy not in POLICIES:
        fail(f"policy {policy!r} is not one of {', '.join(POLICIES)}")
    domains = _strings(raw.get("domain"), "domain", fail, required=True)
    exact, suffixes = set(), []
    for domain in domains:
        name = domain.lower()
        if name.startswith("*."):
            if not is_host_name(name[2:]) or "." not in name[2:]:
                fail(f"domain {domain!r} is not *. followed by a domain name")
            suffixes.append(name[1:])
        elif is_host_name(name):
            exact.add(name)
        else:
            fail(f"domain {domain!r} is not a host name (or *.domain)")
    resources = []
    for pattern in _strings(raw.get("resources"), "resources", fail):
        try:
            resources.append(re.compile(pattern))
        except re.error as exc:
            fail(f"resource {pattern!r} is not a valid regular expression: {exc}")
    methods = set()
    for method in _strings(raw.get("methods"), "methods", fail):
        if not is_method(method):
            fail(f"method {method!r} is not an HTTP method token")
        if method != method.upper() and method.upper() in REGISTERED_METHODS:
            fail(f"method {method!r}: methods are case-sensitive, write {method.upper()!r}")
        methods.add(method)
    subjects = []
    for text in _strings(raw.get("subject"), "subject", fail):
        try:
            subjects.append(subject(text))
        except RulesError as error:
            fail(str(error))
    if policy == BYPASS and subjects:
        # Bypass means "no sign-in"; who is asking cannot be known then.
        fail("a bypass rule cannot have a subject")
    app_passwords = raw.get("app_passwords", False)
    if not isinstance(app_passwords, bool):
        fail("app_passwords must be true or false")
    if app_passwords and policy not in (ONE_FACTOR, TWO_FACTOR):
        # A bypass rule asks for no one, a deny rule lets no one in: a credential there
        # would mean nothing, so the line is a mistake.
        fail(f"app_passwords is for one_factor and two_factor rules, not {policy}")
    return Rule(
        number=number,
        domains=tuple(domains),
        exact=frozenset(exact),
        suffixes=tuple(suffixes),
        resources=tuple(resources),
        methods=frozenset(methods),
        subjects=tuple(subjects),
        policy=policy,
        app_passwords=app_passwords,
    )


def _strings(value, key: str, fail, *, required: bool = False) -> list[str]:
    """A rule's list of strings (a lone string counts as a list of one)."""
    if value is None:
        if required:
            fail(f"{key} is required")
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        fail(f"{key} must be a string or a list of non-empty strings")
    if required and not value:
        fail(f"{key} must not be empty")
    return list(value)
