"""Standard Webhooks v1 signing and verification (no database, no network)."""

import base64

import pytest

from connectors.webhooks import (
    WebhookVerificationError,
    sign,
    signed_headers,
    verify_signature,
)

BODY = b'{"test": 2432232314}'
NOW = 1614265330


def test_signature_matches_the_standard_webhooks_test_vector():
    # From the Standard Webhooks specification and its reference libraries.
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", NOW, BODY
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_accepts_a_signed_request_with_any_header_case():
    headers = signed_headers(["s3cret"], "msg_1", BODY, timestamp=NOW)
    verify_signature("s3cret", headers, BODY, now=NOW + 299)
    verify_signature("s3cret", {k.upper(): v for k, v in headers.items()}, BODY, now=NOW)


def test_key_rotation_signs_with_every_secret_and_either_verifies():
    old, new = "whsec_" + base64.b64encode(b"old-key-bytes").decode(), "new-secret"
    headers = signed_headers([old, new], "msg_1", BODY, timestamp=NOW)
    assert len(headers["webhook-signature"].split()) == 2
    verify_signature(old, headers, BODY, now=NOW)
    verify_signature(new, headers, BODY, now=NOW)
    verify_signature(f"unrelated {new}", headers, BODY, now=NOW)  # receiver mid-rotation


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h, b: (h, b + b" "), "no signature matches"),
        (lambda h, b: ({**h, "webhook-id": "msg_2"}, b), "no signature matches"),
        (lambda h, b: ({**h, "webhook-timestamp": str(NOW - 301)}, b), "300 seconds"),
        (lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), "not an integer"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing"),
    ],
)
def test_verify_rejects_tampering_stale_timestamps_and_missing_headers(change, reason):
    headers, body = change(signed_headers(["s3cret"], "msg_1", BODY, timestamp=NOW), BODY)
    with pytest.raises(WebhookVerificationError, match=reason):
        verify_signature("s3cret", headers, body, now=NOW)


def test_wrong_secret_and_bad_whsec_secret():
    headers = signed_headers(["s3cret"], "msg_1", BODY, timestamp=NOW)
    with pytest.raises(WebhookVerificationError):
        verify_signature("other", headers, BODY, now=NOW)
    with pytest.raises(ValueError, match="base64"):
        sign("whsec_not base64!", "msg_1", NOW, BODY)
