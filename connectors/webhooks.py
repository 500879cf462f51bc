"""Signed webhooks as Standard Webhooks v1 (https://www.standardwebhooks.com/).

Every request carries three headers:

- `webhook-id`: the message id, the same on every retry and replay; receivers
  deduplicate on it;
- `webhook-timestamp`: when this try was sent, in integer seconds since the epoch;
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per
  signing secret, space-separated, so a secret can be rotated without downtime.

A secret is either `whsec_<base64 key>` (the Standard Webhooks format, as the
official libraries generate) or any other string, whose UTF-8 bytes are the key.
Several secrets in one environment variable, separated by spaces, sign with each:
during a rotation the receiver accepts either.

Receivers verify with `verify_signature` (plain code, no web framework)::

    from connectors.webhooks import WebhookVerificationError, verify_signature

    try:
        verify_signature(os.environ["QUORUM_WEBHOOK_SECRET"], request.headers, request.body)
    except WebhookVerificationError:
        return 400
    # then deduplicate on request.headers["webhook-id"] and handle the event
"""

import base64
import binascii
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = 300  # seconds a timestamp may be off either way


class WebhookVerificationError(Exception):
    """A webhook's headers or signature do not check out; the reason says which."""


def secret_key(secret: str) -> bytes:
    """Return the HMAC key of a secret (`whsec_` base64, or the string's UTF-8 bytes)."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error as exc:
            raise ValueError("a whsec_ secret must be base64 after the prefix") from exc
    return secret.encode()


def split_secrets(value: str) -> list[str]:
    """Split an environment variable's value into its secrets (space-separated)."""
    return value.split()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """Return one `v1,<base64>` signature of a message with one secret."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(
    secrets: Iterable[str], message_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """Return the Standard Webhooks headers of a body, signed with every secret."""
    keys = list(secrets)
    if not keys:
        raise ValueError("at least one signing secret is needed")
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(sign(key, message_id, ts, body) for key in keys),
        "content-type": "application/json",
    }


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> None:
    """Check a received webhook; raise WebhookVerificationError if it is not authentic.

    Args:
        secret: the receiver's secret; several space-separated secrets accept any of them.
        headers: the request headers (any mapping; names are matched case-insensitively).
        body: the raw request body, exactly as received (not re-serialized JSON).
        tolerance: how many seconds `webhook-timestamp` may differ from now (replay guard).
        now: the current time in seconds since the epoch (for tests); defaults to the clock.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not message_id or not timestamp or not signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or signature")
    try:
        ts = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        raise WebhookVerificationError(
            f"webhook-timestamp is more than {tolerance} seconds off the clock"
        )
    expected = {sign(key, message_id, ts, body) for key in split_secrets(secret)}
    for candidate in signatures.split():
        if any(hmac.compare_digest(candidate, good) for good in expected):
            return
    raise WebhookVerificationError("no signature matches")


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """Serialize a payload the same way on every try (compact, sorted keys, UTF-8)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Response:
    """What an endpoint answered: its status code and the start of its body."""

    status_code: int
    body: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect is an answer (3xx, retried), never followed: urllib would turn the
    # POST into a GET without the body, and the signature must reach the configured URL.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, headers: Mapping[str, str], body: bytes, *, timeout: float = 10.0) -> Response:
    """POST a body; return the response (any status); raise OSError when none came back."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Response(response.status, response.read(500).decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:  # a 4xx/5xx is an answer, not a transport error
        with exc:
            return Response(exc.code, exc.read(500).decode("utf-8", "replace"))
