"""RFC 8291, section 5 (values in appendix A): the example message, byte for byte.

The fixed keys and salt are the RFC's; with them the encryption must produce exactly the RFC's
body, and the user agent's private key must decrypt it back. Run both through http_ece directly
and through pywebpush's own encoder (the code path the notifier sends with), whose ephemeral key
and salt are pinned to the RFC's values here.
"""

from __future__ import annotations

import base64

import http_ece
import pytest
import pywebpush
from cryptography.hazmat.primitives.asymmetric import ec

pytestmark = pytest.mark.unit

PLAINTEXT = b"When I grow up, I want to be a watermelon"
AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
AS_PUBLIC = (
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
)
UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
UA_PUBLIC = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
SALT = "DGv6ra1nlYgDCS1FRnbzlw"
AUTH_SECRET = "BTBZMqHH6r4Tts7J_aSIgg"
BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml"
    "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT"
    "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
)


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def private_key(raw: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(unb64(raw), "big"), ec.SECP256R1())


def test_the_rfc_keys_are_pairs():
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    for private, public in ((AS_PRIVATE, AS_PUBLIC), (UA_PRIVATE, UA_PUBLIC)):
        point = (
            private_key(private)
            .public_key()
            .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        )
        assert point == unb64(public)


def test_http_ece_with_the_rfc_keys_and_salt_gives_the_rfc_body():
    body = http_ece.encrypt(
        PLAINTEXT,
        salt=unb64(SALT),
        private_key=private_key(AS_PRIVATE),
        dh=unb64(UA_PUBLIC),
        auth_secret=unb64(AUTH_SECRET),
        version="aes128gcm",
    )

    assert body == unb64(BODY)


def test_pywebpush_encoder_with_the_rfc_keys_and_salt_gives_the_rfc_body(monkeypatch):
    monkeypatch.setattr(
        pywebpush.ec, "generate_private_key", lambda *a, **k: private_key(AS_PRIVATE)
    )
    monkeypatch.setattr(http_ece.os, "urandom", lambda n: unb64(SALT))
    pusher = pywebpush.WebPusher(
        {"endpoint": "https://push.example/x", "keys": {"p256dh": UA_PUBLIC, "auth": AUTH_SECRET}}
    )

    encoded = pusher.encode(PLAINTEXT, content_encoding="aes128gcm")

    assert encoded["body"] == unb64(BODY)


def test_the_rfc_body_decrypts_back_with_the_user_agent_key():
    plain = http_ece.decrypt(
        unb64(BODY),
        private_key=private_key(UA_PRIVATE),
        auth_secret=unb64(AUTH_SECRET),
        version="aes128gcm",
    )

    assert plain == PLAINTEXT


def test_a_wrong_auth_secret_does_not_decrypt():
    with pytest.raises(http_ece.ECEException):
        http_ece.decrypt(
            unb64(BODY),
            private_key=private_key(UA_PRIVATE),
            auth_secret=b"\x00" * 16,
            version="aes128gcm",
        )
