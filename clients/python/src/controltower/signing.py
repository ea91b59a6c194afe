"""Signatures over the exact body bytes, as the edge verifies them.

Control Tower's scheme: ``X-CT-Signature: sha256=<hex HMAC-SHA256>`` of the body, or, with
``X-CT-Timestamp``, of ``"{timestamp}.{body}"``. Standard Webhooks: ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``;
a ``whsec_`` secret is base64-decoded first.
"""

import base64
import hashlib
import hmac

SCHEMES = ("ct", "ct-timestamp", "standard-webhooks")


def _key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_"):], validate=True)
        except ValueError:
            pass
    return secret.encode()


def sign(scheme: str, secret: str, body: bytes, *, timestamp: int, message_id: str) -> dict:
    """The signature headers of ``body`` under ``scheme``."""
    if scheme == "ct":
        return {"X-CT-Signature": "sha256=" + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()}
    if scheme == "ct-timestamp":
        signed = f"{timestamp}.".encode() + body
        return {
            "X-CT-Signature": "sha256=" + hmac.new(_key(secret), signed, hashlib.sha256).hexdigest(),
            "X-CT-Timestamp": str(timestamp),
        }
    if scheme == "standard-webhooks":
        signed = f"{message_id}.{timestamp}.".encode() + body
        digest = base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()
        return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": "v1," + digest}
    raise ValueError(f"unknown signature scheme {scheme!r}; one of {', '.join(SCHEMES)}")
