"""A software WebAuthn authenticator (ES256, attestation "none") for tests without a
browser: it answers the options the portal sends with what the browser's
`PublicKeyCredential.toJSON()` gives, with settable flags, counter and origin."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftKey:
    def __init__(self, origin: str, *, uv=True, backup=False, resident=True, aaguid=bytes(16)):
        self.origin, self.uv, self.backup, self.resident, self.aaguid = (
            origin, uv, backup, resident, aaguid,
        )  # fmt: skip
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.counter = 0
        self.rp_id = self.user_handle = None
        self.cross_origin = False

    def _flags(self, extra=0) -> int:
        flags = UP | extra | (UV if self.uv else 0)
        return flags | (BE | BS if self.backup else 0)

    def _client_data(self, kind: str, options: dict) -> bytes:
        data = {"type": kind, "challenge": options["challenge"], "origin": self.origin}
        data["crossOrigin"] = self.cross_origin
        return json.dumps(data).encode()

    def create(self, options: dict) -> str:
        """navigator.credentials.create(): the credential's JSON as text."""
        self.rp_id = options["rp"]["id"]
        self.user_handle = unb64(options["user"]["id"])
        numbers = self.key.public_key().public_numbers()
        x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
        cose = {1: 2, 3: -7, -1: 1, -2: x, -3: y}  # EC2, ES256, P-256
        attested = self.aaguid + struct.pack(">H", 32) + self.credential_id + cbor2.dumps(cose)
        auth = self._auth_data(self._flags(AT)) + attested
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth})
        response = {
            "clientDataJSON": b64(self._client_data("webauthn.create", options)),
            "attestationObject": b64(attestation),
            "transports": ["internal"] if self.resident else ["usb"],
        }
        return self._credential(response)

    def get(self, options: dict, *, counter: int | None = None) -> str:
        """navigator.credentials.get(): the assertion's JSON as text (the counter rises
        by one, or is `counter`)."""
        self.counter = self.counter + 1 if counter is None else counter
        auth = self._auth_data(self._flags())
        client_data = self._client_data("webauthn.get", options)
        signed = auth + hashlib.sha256(client_data).digest()
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        response = {
            "clientDataJSON": b64(client_data),
            "authenticatorData": b64(auth),
            "signature": b64(signature),
        }
        if self.resident:
            response["userHandle"] = b64(self.user_handle)
        return self._credential(response)

    def _auth_data(self, flags: int) -> bytes:
        rp_hash = hashlib.sha256(self.rp_id.encode()).digest()
        return rp_hash + bytes([flags]) + struct.pack(">I", self.counter)

    def _credential(self, response: dict) -> str:
        return json.dumps(
            {
                "id": b64(self.credential_id),
                "rawId": b64(self.credential_id),
                "type": "public-key",
                "response": response,
                "clientExtensionResults": {},
                "authenticatorAttachment": "platform" if self.resident else "cross-platform",
            }
        )
