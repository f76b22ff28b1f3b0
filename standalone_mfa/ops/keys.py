"""Re-encrypting every stored secret under the newest of `MFA_ENCRYPTION_KEYS`, so that
the older keys can then be dropped (`mfa rotate-keys`).

What is encrypted with those keys, and so re-encrypted here: the users' TOTP secrets
(`TotpCredential`), the secret of every set-up in progress (`WebSession`'s pending
secret: a sign-in's set-up, a first or a new authenticator from Account security), the
recovery codes a session holds to show once (in its data, `state.SHOWN_CODES_KEY`), and
the facts of every notice not yet sent (`Notice.facts`), and the private half of every
OpenID Connect signing key (`OidcSigningKey`). All in one transaction: a
value that no configured key can read raises `InvalidToken`, and nothing is changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..core import crypto
from ..core.db import write_transaction
from ..core.models import Notice, OidcSigningKey, TotpCredential, WebSession
from ..signin.state import SHOWN_CODES_KEY


@dataclass(frozen=True)
class Rotated:
    """How many values of each kind were re-encrypted."""

    credentials: int
    set_ups: int
    shown_codes: int
    notices: int
    signing_keys: int = 0


def rotate_all() -> Rotated:
    """Re-encrypt every stored secret with the newest key (see the module's text)."""
    with write_transaction():
        return Rotated(
            credentials=_rotate_credentials(),
            set_ups=_rotate_set_ups(),
            shown_codes=_rotate_shown_codes(),
            notices=_rotate_notices(),
            signing_keys=_rotate_signing_keys(),
        )


def _rotate_credentials() -> int:
    rows = TotpCredential.select(TotpCredential.id, TotpCredential.secret_encrypted)
    for row in rows:
        TotpCredential.update(secret_encrypted=crypto.rotate(row.secret_encrypted)).where(
            TotpCredential.id == row.id
        ).execute()
    return len(rows)


def _rotate_set_ups() -> int:
    rows = WebSession.select(WebSession.id, WebSession.pending_secret_encrypted).where(
        WebSession.pending_secret_encrypted.is_null(False)
    )
    for row in rows:
        WebSession.update(
            pending_secret_encrypted=crypto.rotate(row.pending_secret_encrypted)
        ).where(WebSession.id == row.id).execute()
    return len(rows)


def _rotate_shown_codes() -> int:
    count = 0
    marked = WebSession.data.contains(f'"{SHOWN_CODES_KEY}"')
    for row in WebSession.select(WebSession.id, WebSession.data).where(marked):
        data = json.loads(row.data)
        if not data.get(SHOWN_CODES_KEY):
            continue
        data[SHOWN_CODES_KEY] = crypto.rotate(data[SHOWN_CODES_KEY])
        WebSession.update(data=json.dumps(data, separators=(",", ":"))).where(
            WebSession.id == row.id
        ).execute()
        count += 1
    return count


def _rotate_notices() -> int:
    rows = Notice.select(Notice.id, Notice.facts).where(Notice.sent_at.is_null())
    for row in rows:
        Notice.update(facts=crypto.rotate(row.facts)).where(Notice.id == row.id).execute()
    return len(rows)


def _rotate_signing_keys() -> int:
    rows = OidcSigningKey.select(OidcSigningKey.id, OidcSigningKey.private_jwk_encrypted)
    for row in rows:
        OidcSigningKey.update(
            private_jwk_encrypted=crypto.rotate(row.private_jwk_encrypted)
        ).where(OidcSigningKey.id == row.id).execute()
    return len(rows)
