"""Passkeys and security keys (WebAuthn, through py_webauthn): the relying party as the
settings say (never as a request says), each user's random handle and keys, and the
ceremonies: options out, the browser's answer verified.

- A *passkey* is discoverable and verifies its user (resident key and user
  verification required): it may sign in with no password and counts as both factors.
- A *security key* is a second factor after the password (both discouraged).

Every ceremony's challenge is single-use, bound to the browser session that asked for
it (`binding_of`: a random token the session keeps; only its SHA-256 is stored) and
lives WEBAUTHN_TIMEOUT seconds: the one request that deletes its row may verify with it.
py_webauthn checks the origin against the exact list, the RP ID, the challenge, the
signature, the flags and that the sign counter rose (0 then 0 passes: synced passkeys
keep 0); this module adds what it leaves to the caller: `crossOrigin` refused, the
credential belonging to the expected user, and `userHandle` matching that user.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import MutableMapping
from urllib.parse import urlsplit

from peewee import IntegrityError
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from ..core import audit, hostnames, names
from ..core.audit import NO_CLIENT, Client
from ..core.config import ConfigurationError, setting
from ..core.db import Prepared, write_transaction
from ..core.models import User, WebAuthnChallenge, WebAuthnCredential
from ..notices import outbox

PASSKEY = "passkey"
SECURITY_KEY = "security_key"
KINDS = (PASSKEY, SECURITY_KEY)
NAME_MAX = 64
ANSWER_MAX = 16 * 1024  # a browser's answer (toJSON) is a few kilobytes at most

# What a challenge was asked for: it is good for that ceremony only.
REGISTER = {PASSKEY: "register_passkey", SECURITY_KEY: "register_security_key"}
SECOND_FACTOR = "second_factor"  # after the password, or an account change's re-proof
PASSWORDLESS = "passwordless"  # a passkey sign-in with no username: any user's passkey
REAUTH = "reauth"  # a signed-in user re-proving who they are, or an administrator's step-up
PURPOSES = (*REGISTER.values(), SECOND_FACTOR, PASSWORDLESS, REAUTH)

ALGORITHMS = [
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,  # Windows Hello
]
BINDING_KEY = "webauthn_binding"  # in the session (sessions.WEBAUTHN_BINDING_KEY)
HANDLE_BYTES = 64


# --- The relying party, from settings -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RelyingParty:
    id: str
    name: str
    origins: tuple[str, ...]


def configure(app) -> RelyingParty:
    """Fill WEBAUTHN_RP_ID, WEBAUTHN_ORIGINS and WEBAUTHN_RP_NAME from their defaults
    (the portal's URL, else localhost; the issuer) and check them together, at start:
    ConfigurationError for an RP ID that is an address, not the portal's host or a
    parent of it, or an origin whose host is not under the RP ID."""
    portal = setting("GATEWAY_PORTAL_URL", app)
    portal_host = urlsplit(portal).hostname if portal else None
    rp_id = (setting("WEBAUTHN_RP_ID", app) or portal_host or "localhost").lower()
    if not hostnames.is_host_name(rp_id) or rp_id.replace(".", "").isdigit():
        raise ConfigurationError(
            f"WEBAUTHN_RP_ID must be a domain name (the portal's host or a parent domain of "
            f"it), never an IP address: {rp_id!r} is not one. Browsers refuse passkeys for "
            "an address: open the portal by name (http://localhost:5000 on your own machine)."
        )
    if portal_host and not hostnames.is_under(portal_host, rp_id):
        raise ConfigurationError(
            f"WEBAUTHN_RP_ID ({rp_id}) must be the portal's host ({portal_host}) or a parent "
            "domain of it: browsers make keys only for those."
        )
    origins = setting("WEBAUTHN_ORIGINS", app)
    explicit = bool(origins)
    if not explicit:
        parts = urlsplit(portal) if portal else None
        origins = [f"{parts.scheme}://{parts.netloc}".lower()] if parts else []
        origins = origins or ["http://localhost:5000"]
    for origin in origins:
        host = hostnames.origin_host(origin)
        if host is None or not hostnames.is_under(host, rp_id):
            raise ConfigurationError(
                f"WEBAUTHN_ORIGINS: {origin!r} must be an origin (scheme://host[:port]) whose "
                f"host is the RP ID ({rp_id}) or under it."
            )
        # Browsers make no passkey outside a secure context; a portal served over plain
        # http elsewhere (the default's origin) simply offers none, as before.
        plain = origin.startswith("http://")
        if explicit and plain and host != "localhost" and not host.endswith(".localhost"):
            raise ConfigurationError(
                f"WEBAUTHN_ORIGINS: {origin!r} must use https (browsers allow passkeys over "
                "plain http only on localhost)."
            )
    name = setting("WEBAUTHN_RP_NAME", app) or setting("MFA_ISSUER", app)
    app.config["WEBAUTHN_RP_ID"], app.config["WEBAUTHN_ORIGINS"] = rp_id, list(origins)
    app.config["WEBAUTHN_RP_NAME"] = name
    return RelyingParty(rp_id, name, tuple(origins))


def relying_party() -> RelyingParty:
    return RelyingParty(
        setting("WEBAUTHN_RP_ID"), setting("WEBAUTHN_RP_NAME"), tuple(setting("WEBAUTHN_ORIGINS"))
    )


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a ceremony came to. `problem` is a key of `core.messages`."""

    ok: bool
    problem: str | None = None
    user: User | None = None
    credential: WebAuthnCredential | None = None
    user_verified: bool = False
    clone: bool = False  # the sign counter went backwards: refused, audited, told


# --- Users and their keys -----------------------------------------------------------


def user_handle(user: User) -> bytes:
    """The user's WebAuthn handle: 64 random bytes made the first time it is needed
    (one conditional UPDATE: two racing requests keep the first one's)."""
    if user.webauthn_user_handle:
        return bytes(user.webauthn_user_handle)
    with write_transaction():
        User.update(webauthn_user_handle=secrets.token_bytes(HANDLE_BYTES)).where(
            (User.id == user.id) & User.webauthn_user_handle.is_null()
        ).execute()
        handle = User.select(User.webauthn_user_handle).where(User.id == user.id).scalar()
    user.webauthn_user_handle = handle
    return bytes(handle)


def user_by_handle(handle: bytes | None) -> User | None:
    if not handle:
        return None
    return User.get_or_none(User.webauthn_user_handle == handle)


def credentials_of(user: User) -> list[WebAuthnCredential]:
    """The user's keys, oldest first."""
    return list(
        WebAuthnCredential.select()
        .where(WebAuthnCredential.user == user)
        .order_by(WebAuthnCredential.created_at, WebAuthnCredential.id)
    )


def has_keys(user: User) -> bool:
    return WebAuthnCredential.select().where(WebAuthnCredential.user == user).exists()


def credential_of(user: User, credential_id: int) -> WebAuthnCredential | None:
    return WebAuthnCredential.get_or_none(
        (WebAuthnCredential.id == credential_id) & (WebAuthnCredential.user == user)
    )


def clean_name(raw: str | None) -> str | None:
    """A key's name as kept: spaces trimmed and collapsed, 1 to 64 printable characters;
    None if it cannot be one."""
    return names.display_name(raw, NAME_MAX)


def name_taken(user: User, name: str, *, other_than: int | None = None) -> bool:
    query = WebAuthnCredential.select().where(
        (WebAuthnCredential.user == user) & (WebAuthnCredential.name == name)
    )
    if other_than is not None:
        query = query.where(WebAuthnCredential.id != other_than)
    return query.exists()


def rename(user: User, credential_id: int, raw_name: str | None, *, client: Client) -> Outcome:
    """Rename one of the user's keys."""
    name = clean_name(raw_name)
    if name is None:
        return Outcome(False, problem="key_name_invalid")
    credential = credential_of(user, credential_id)
    if credential is None:
        return Outcome(False, problem="key_not_found")
    if name_taken(user, name, other_than=credential.id):
        return Outcome(False, problem="key_name_taken")
    with write_transaction():
        query = WebAuthnCredential.update(name=name)
        query.where(WebAuthnCredential.id == credential.id).execute()
        audit.record("webauthn_renamed", "ok", user=user, detail=name, client=client)
    return Outcome(True, user=user, credential=credential)


def remove(user: User, credential_id: int, *, at: dt.datetime, client: Client) -> str | None:
    """Remove one of the user's keys, told by mail: its name, or None if there is none."""
    credential = credential_of(user, credential_id)
    if credential is None:
        return None
    with write_transaction():
        deleted = (
            WebAuthnCredential.delete().where(WebAuthnCredential.id == credential.id).execute()
        )
        if deleted:
            detail = credential.name
            audit.record("webauthn_removed", "ok", user=user, detail=detail, client=client)
            outbox.queue(user, "webauthn_removed", client=client, at=at, name=credential.name)
    return credential.name if deleted else None


def remove_all(user: User) -> int:
    """Every key of the user (an administrator's reset: the caller audits and tells)."""
    return WebAuthnCredential.delete().where(WebAuthnCredential.user == user).execute()


def describe(credential: WebAuthnCredential) -> dict:
    """What the API and `user show` say of a key (never its public key or id bytes)."""
    return {
        "id": credential.id,
        "name": credential.name,
        "kind": credential.kind,
        "synced": credential.backup_state,
        "created_at": credential.created_at.isoformat() + "Z",
        "last_used_at": (credential.last_used_at.isoformat() + "Z")
        if credential.last_used_at
        else None,
        "clone_warning": credential.clone_warning_at is not None,
    }


# --- Challenges -----------------------------------------------------------------------


def binding_of(web_session: MutableMapping) -> str:
    """The random token that binds ceremonies to this browser session (made once; it
    goes when the session is signed out or expires)."""
    token = web_session.get(BINDING_KEY)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        web_session[BINDING_KEY] = token
    return token


def _hash(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()


# A passkey sign-in's challenge is offered to every visitor of the sign-in page, and an
# anonymous page view touches no database (SC-45): it is not stored when issued but
# made from its time and the session's binding under the app's key, so that only this
# session can answer it and only until it expires. Used up, its hash is stored until
# then, so it is still answered once.
PASSWORDLESS_USED = "passwordless_used"
_STAMP = 8  # bytes of the issue time (Unix seconds) at the start of the challenge
_NONCE = 16
_EPOCH = dt.datetime(1970, 1, 1)  # naive UTC, as every time in the database


def _passwordless_challenge(binding: str, issued: int, nonce: bytes) -> bytes:
    """Its issue time, a random part (each page its own challenge), and their MAC with
    the session's binding under the app's key."""
    head = issued.to_bytes(_STAMP, "big") + nonce
    message = b"webauthn passwordless\0" + binding.encode() + b"\0" + head
    return head + hmac.new(setting("SECRET_KEY").encode(), message, hashlib.sha256).digest()


def _consume_passwordless(binding: str, challenge: bytes, at: dt.datetime) -> bool:
    """Whether `challenge` is one this session was given, alive, and not used before
    (it is now: its hash is stored until it expires)."""
    if len(challenge) != _STAMP + _NONCE + hashlib.sha256().digest_size:
        return False
    issued = int.from_bytes(challenge[:_STAMP], "big")
    nonce = challenge[_STAMP : _STAMP + _NONCE]
    if not hmac.compare_digest(_passwordless_challenge(binding, issued, nonce), challenge):
        return False  # before any arithmetic on the time: it is ours, so it is sane
    issued_at = _EPOCH + dt.timedelta(seconds=issued)
    expires = issued_at + dt.timedelta(seconds=setting("WEBAUTHN_TIMEOUT"))
    if not issued_at <= at < expires:
        return False
    # The one request whose INSERT stores it wins; any other inserts nothing.
    used = _USED.run(binding=hashlib.sha256(challenge).hexdigest(), at=at, expires_at=expires)
    return used is not None


# A passkey sign-in's statements are on a hot path (see `core.db.Prepared`).
_USED = Prepared(
    lambda slot: WebAuthnChallenge.insert(
        binding=slot("binding"),
        purpose=PASSWORDLESS_USED,
        challenge=b"",
        user=None,
        created_at=slot("at", WebAuthnChallenge.created_at),
        expires_at=slot("expires_at", WebAuthnChallenge.expires_at),
    ).on_conflict(
        action="NOTHING", conflict_target=(WebAuthnChallenge.binding, WebAuthnChallenge.purpose)
    )
)
# The key with its owner (one query: the owner's handle is checked next).
_KEY_BY_ID = Prepared(
    lambda slot: (
        WebAuthnCredential.select(WebAuthnCredential, User)
        .join(User)
        .where(WebAuthnCredential.credential_id == slot("credential_id"))
        .limit(1)
    )
)
_KEY_USED = Prepared(
    lambda slot: WebAuthnCredential.update(
        sign_count=slot("sign_count"),
        backup_state=slot("backup_state"),
        last_used_at=slot("at", WebAuthnCredential.last_used_at),
    ).where(
        (WebAuthnCredential.id == slot("id")) & (WebAuthnCredential.sign_count == slot("seen"))
    )
)


def _issue(binding: str, purpose: str, user: User | None, at: dt.datetime) -> bytes:
    """A new challenge for this session and purpose, replacing any earlier one."""
    if purpose == PASSWORDLESS:
        issued = int((at - _EPOCH).total_seconds())
        return _passwordless_challenge(binding, issued, secrets.token_bytes(_NONCE))
    challenge = secrets.token_bytes(32)
    key = _hash(binding)
    with write_transaction():
        WebAuthnChallenge.delete().where(
            (WebAuthnChallenge.binding == key) & (WebAuthnChallenge.purpose == purpose)
            | (WebAuthnChallenge.expires_at <= at)
        ).execute()
        WebAuthnChallenge.create(
            binding=key,
            purpose=purpose,
            challenge=challenge,
            user=user,
            created_at=at,
            expires_at=at + dt.timedelta(seconds=setting("WEBAUTHN_TIMEOUT")),
        )
    return challenge


def _consume(
    binding: str, purpose: str, challenge: bytes, user: User | None, at: dt.datetime
) -> bool:
    """Use the challenge up: True for the one request whose DELETE removed it (it was
    this session's, for this purpose and user, and still alive). In the caller's
    transaction, so a refused answer still leaves it used."""
    if purpose == PASSWORDLESS:
        return user is None and _consume_passwordless(binding, challenge, at)
    condition = (
        (WebAuthnChallenge.binding == _hash(binding))
        & (WebAuthnChallenge.purpose == purpose)
        & (WebAuthnChallenge.challenge == challenge)
        & (WebAuthnChallenge.expires_at > at)
    )
    if user is None:
        condition &= WebAuthnChallenge.user.is_null()
    else:
        condition &= WebAuthnChallenge.user == user
    return WebAuthnChallenge.delete().where(condition).execute() == 1


def prune_challenges(at: dt.datetime) -> int:
    return WebAuthnChallenge.delete().where(WebAuthnChallenge.expires_at <= at).execute()


def _options(options) -> dict:
    """py_webauthn's options as the JSON the browser's parse*OptionsFromJSON takes."""
    return json.loads(options_to_json(options))


def _descriptors(user: User) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=bytes(c.credential_id),
            transports=[
                AuthenticatorTransport(t) for t in c.transports.split(",") if t in _TRANSPORTS
            ]
            or None,
        )
        for c in credentials_of(user)
    ]


_TRANSPORTS = {t.value for t in AuthenticatorTransport}


# --- Registration ---------------------------------------------------------------------


def registration_options(user: User, kind: str, *, binding: str, at: dt.datetime) -> dict:
    """The options for `navigator.credentials.create()`: a passkey (resident key and
    user verification required) or a security key (both discouraged); the user's
    keys excluded, so one authenticator is not registered twice."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    rp = relying_party()
    required = kind == PASSKEY
    challenge = _issue(binding, REGISTER[kind], user, at)
    return _options(
        generate_registration_options(
            rp_id=rp.id,
            rp_name=rp.name,
            user_name=user.username,
            user_id=user_handle(user),
            user_display_name=user.username,
            challenge=challenge,
            timeout=setting("WEBAUTHN_TIMEOUT") * 1000,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED
                if required
                else ResidentKeyRequirement.DISCOURAGED,
                user_verification=UserVerificationRequirement.REQUIRED
                if required
                else UserVerificationRequirement.DISCOURAGED,
            ),
            exclude_credentials=_descriptors(user),
            supported_pub_key_algs=ALGORITHMS,
        )
    )


def _client_data(parsed) -> tuple[bytes, bool] | None:
    """The challenge and crossOrigin the browser signed (None: not readable)."""
    try:
        data = json.loads(parsed.response.client_data_json)
        from webauthn.helpers import base64url_to_bytes

        return base64url_to_bytes(data["challenge"]), data.get("crossOrigin") is True
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _parse(raw: str | None, parser):
    try:
        return parser(raw or "")
    except (WebAuthnException, ValueError, TypeError, KeyError, AttributeError):
        return None


def verify_registration(
    user: User,
    raw: str | None,
    *,
    kind: str,
    name: str | None,
    binding: str,
    at: dt.datetime,
    client: Client = NO_CLIENT,
) -> Outcome:
    """The browser's answer to `registration_options` (`credential.toJSON()` as
    text): on success the key is saved under `name`, audited and told by mail."""
    clean = clean_name(name)
    if clean is None:
        return Outcome(False, problem="key_name_invalid")
    if name_taken(user, clean):
        return Outcome(False, problem="key_name_taken")
    parsed: RegistrationCredential | None = _parse(raw, parse_registration_credential_json)
    signed = _client_data(parsed) if parsed else None
    if signed is None:
        return _refused_registration(user, "unreadable", client)
    challenge, cross_origin = signed
    rp = relying_party()
    with write_transaction():
        if not _consume(binding, REGISTER.get(kind, ""), challenge, user, at):
            return _refused_registration(user, "challenge", client)
        if cross_origin:
            return _refused_registration(user, "cross_origin", client)
        try:
            verified = verify_registration_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=rp.id,
                expected_origin=list(rp.origins),
                require_user_verification=kind == PASSKEY,
                supported_pub_key_algs=ALGORITHMS,
            )
        except WebAuthnException as exc:
            return _refused_registration(user, str(exc), client)
        transports = [t.value for t in (parsed.response.transports or [])]
        try:
            with write_transaction():  # a savepoint: a duplicate id leaves the rest
                credential = WebAuthnCredential.create(
                    user=user,
                    credential_id=verified.credential_id,
                    public_key=verified.credential_public_key,
                    sign_count=verified.sign_count,
                    aaguid=str(_uuid(verified.aaguid)),
                    transports=",".join(transports)[:255],
                    name=clean,
                    kind=kind,
                    backup_eligible=verified.credential_device_type
                    == CredentialDeviceType.MULTI_DEVICE,
                    backup_state=verified.credential_backed_up,
                    rp_id=rp.id,
                    user_verified=verified.user_verified,
                    fmt=str(getattr(verified.fmt, "value", verified.fmt)),
                    created_at=at,
                )
        except IntegrityError:
            return _refused_registration(
                user, "already registered", client, problem="key_registered"
            )
        audit.record("webauthn_added", "ok", user=user, detail=f"{kind}: {clean}", client=client)
        outbox.queue(user, "webauthn_added", client=client, at=at, name=clean, key_kind=kind)
    return Outcome(True, user=user, credential=credential, user_verified=verified.user_verified)


def _uuid(aaguid: str) -> str:
    return aaguid if len(aaguid) == 36 else "00000000-0000-0000-0000-000000000000"


def _refused_registration(user, why: str, client, problem: str = "key_not_accepted") -> Outcome:
    audit.record("webauthn_added", "refused", user=user, detail=why[:200], client=client)
    return Outcome(False, problem)


# --- Authentication -------------------------------------------------------------------


def authentication_options(
    user: User | None, *, binding: str, at: dt.datetime, purpose: str | None = None
) -> dict:
    """The options for `navigator.credentials.get()`.

    With a user (the second factor after the password): only that user's keys are
    allowed, user verification discouraged (a security key need not verify; a passkey
    that does is welcome); re-proving who one is (`REAUTH`, its own challenge): the
    same keys, user verification preferred. Without one (a passkey sign-in, no
    username): no `allowCredentials`, user verification required."""
    if purpose is None:
        purpose = SECOND_FACTOR if user is not None else PASSWORDLESS
    if (purpose == PASSWORDLESS) != (user is None):
        raise ValueError("a passwordless ceremony has no user; any other has one")
    challenge = _issue(binding, purpose, user, at)
    return _options(
        generate_authentication_options(
            rp_id=relying_party().id,
            challenge=challenge,
            timeout=setting("WEBAUTHN_TIMEOUT") * 1000,
            allow_credentials=_descriptors(user) if user is not None else [],
            user_verification=UserVerificationRequirement.REQUIRED
            if user is None
            else UserVerificationRequirement.PREFERRED
            if purpose == REAUTH
            else UserVerificationRequirement.DISCOURAGED,
        )
    )


@dataclasses.dataclass(frozen=True)
class Answer:
    """A browser's answer to `authentication_options`, checked as far as it can be
    without writing anything (`read_authentication`): what it signed, the key it names
    as read then, and py_webauthn's verdict against that key. `use_authentication`
    decides, in the caller's transaction."""

    parsed: AuthenticationCredential | None = None
    challenge: bytes | None = None  # None: the answer was not readable
    cross_origin: bool = False
    credential: WebAuthnCredential | None = None
    verified: object | None = None  # py_webauthn's VerifiedAuthentication
    error: str | None = None  # why py_webauthn refused it


def read_authentication(raw: str | None, *, user: User | None) -> Answer:
    """The answer parsed, its key read and its signature checked: no write and no lock,
    so that a passkey sign-in holds SQLite's write lock only for its writes. Nothing is
    decided yet: the challenge is not used up and nothing is told (`use_authentication`)."""
    parsed: AuthenticationCredential | None = _parse(raw, parse_authentication_credential_json)
    signed = _client_data(parsed) if parsed else None
    if signed is None:
        return Answer()
    challenge, cross_origin = signed
    return _checked(Answer(parsed, challenge, cross_origin), user)


def _checked(answer: Answer, user: User | None) -> Answer:
    """The answer against its key as stored now: py_webauthn's signature, origin, RP ID,
    challenge, flags and sign counter checks."""
    if answer.cross_origin:
        return answer
    found = _KEY_BY_ID.run(credential_id=bytes(answer.parsed.raw_id))
    credential = found[0] if found else None
    if credential is None or credential.rp_id != relying_party().id:
        return dataclasses.replace(answer, credential=credential, verified=None, error=None)
    try:
        verified = verify_authentication_response(
            credential=answer.parsed,
            expected_challenge=answer.challenge,
            expected_rp_id=relying_party().id,
            expected_origin=list(relying_party().origins),
            credential_public_key=bytes(credential.public_key),
            credential_current_sign_count=credential.sign_count,
            require_user_verification=user is None,
        )
    except WebAuthnException as exc:
        return dataclasses.replace(answer, credential=credential, verified=None, error=str(exc))
    return dataclasses.replace(answer, credential=credential, verified=verified, error=None)


def verify_authentication(
    raw: str | None,
    *,
    user: User | None,
    binding: str,
    at: dt.datetime,
    client: Client = NO_CLIENT,
    purpose: str | None = None,
    transaction=write_transaction,
) -> Outcome:
    """The browser's answer to `authentication_options` (`credential.toJSON()` as text):
    `read_authentication`, then `use_authentication` in `transaction` (the caller's own
    changes may join it)."""
    answer = read_authentication(raw, user=user)
    with transaction():
        return use_authentication(
            answer, user=user, binding=binding, at=at, client=client, purpose=purpose
        )


_KEY_TRIES = 5


def use_authentication(
    answer: Answer,
    *,
    user: User | None,
    binding: str,
    at: dt.datetime,
    client: Client = NO_CLIENT,
    purpose: str | None = None,
) -> Outcome:
    """Decide on an answer read by `read_authentication`, in the caller's transaction.

    With `user`: the key must be one of theirs, and a `userHandle`, when the
    authenticator sends one, must be theirs. Without (a passkey sign-in): the key is
    found by its id, its `userHandle` must be present and name its owner, and user
    verification is required. A refusal never says whether a user or key exists.

    The challenge is used up first, whatever the answer. The sign counter: 0 then 0
    passes; one that did not rise is a possible clone: the sign-in is refused, the key
    marked (`clone_warning_at`), audited and told by mail. The key's new count is
    written only over the count it was checked against: a key used or changed since it
    was read is checked again, under this transaction's write."""
    if purpose is None:
        purpose = SECOND_FACTOR if user is not None else PASSWORDLESS
    if answer.challenge is None:
        return _refused(user, "unreadable", client)
    if not _consume(binding, purpose, answer.challenge, user, at):
        return _refused(user, "challenge", client)
    if answer.cross_origin:
        return _refused(user, "cross_origin", client)
    for _ in range(_KEY_TRIES):
        credential = answer.credential
        handle = answer.parsed.response.user_handle
        if credential is None:
            return _refused(user, "unknown credential", client)
        owner = credential.user
        if user is not None and owner.id != user.id:
            return _refused(user, "another user's credential", client)
        if user is None and (not handle or bytes(handle) != user_handle(owner)):
            return _refused(None, "user handle missing or wrong", client)
        if handle and bytes(handle) != user_handle(owner):
            return _refused(owner, "user handle of another user", client)
        if credential.rp_id != relying_party().id:
            return _refused(owner, "made for another RP ID", client)
        verified = answer.verified
        if verified is None:
            if "sign count" in answer.error.lower():
                return _possible_clone(owner, credential, answer.error, at, client)
            return _refused(owner, answer.error, client)
        if _KEY_USED.run(
            sign_count=verified.new_sign_count,
            backup_state=verified.credential_backed_up,
            at=at,
            id=credential.id,
            seen=credential.sign_count,
        ):
            break
        answer = _checked(answer, user)  # the key changed since it was read
    else:
        return _refused(user, "key changed meanwhile", client)
    credential.sign_count, credential.last_used_at = verified.new_sign_count, at
    audit.record(
        "webauthn_used",
        "ok",
        user=owner,
        detail=f"{credential.kind}: {credential.name}"
        + ("" if verified.user_verified else " (user not verified)"),
        client=client,
    )
    return Outcome(True, user=owner, credential=credential, user_verified=verified.user_verified)


def _refused(user: User | None, why: str, client: Client) -> Outcome:
    audit.record("webauthn_used", "refused", user=user, detail=why[:200], client=client)
    return Outcome(False, "key_not_accepted")


def _possible_clone(user, credential, why: str, at: dt.datetime, client: Client) -> Outcome:
    WebAuthnCredential.update(clone_warning_at=at).where(
        WebAuthnCredential.id == credential.id
    ).execute()
    detail = f"{credential.name}: {why}"[:200]
    audit.record("webauthn_clone", "refused", user=user, detail=detail, client=client)
    outbox.queue(user, "webauthn_clone", client=client, at=at, name=credential.name)
    return Outcome(False, "key_not_accepted", user=user, credential=credential, clone=True)
