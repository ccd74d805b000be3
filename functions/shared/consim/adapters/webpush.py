"""Web Push: RFC 8291 message encryption (aes128gcm) and RFC 8292 VAPID, through pywebpush.

The VAPID key identifies this application server to every push service; browsers pin its public
half when they subscribe, so it must outlive restarts. It comes from VAPID_PRIVATE_KEY, or else is
generated once into `<state_dir>/vapid-private.pem` and reused.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid

from consim.config import Settings
from consim.domain.notifications import (
    DeliveryOutcome,
    PushKeys,
    judge_response,
    parse_retry_after,
    unreachable,
)

logger = logging.getLogger(__name__)

VAPID_KEY_FILE = "vapid-private.pem"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _create_key_file_once(path: Path) -> None:
    """Write a fresh key to `path` unless one exists; safe when several workers race to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".vapid-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        os.chmod(tmp, 0o600)
        # link() fails if the name exists: the first worker's key wins, the others read it.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
            logger.info("generated a VAPID key", extra={"path": str(path)})
    finally:
        os.unlink(tmp)


def load_vapid(settings: Settings) -> Vapid:
    configured = settings.vapid_private_key.strip()
    if configured:
        if "-----BEGIN" in configured:
            return Vapid.from_pem(configured.encode())
        return Vapid.from_string(configured)
    path = settings.state_dir / VAPID_KEY_FILE
    if not path.exists():
        _create_key_file_once(path)
    return Vapid.from_pem(path.read_bytes())


def application_server_key(vapid: Vapid) -> str:
    """The VAPID public key as browsers want it for `pushManager.subscribe`."""
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return _b64url(raw)


class WebPushSender:
    """Encrypts and posts one message to one push endpoint; safe to call from many threads."""

    def __init__(self, vapid: Vapid, subject: str) -> None:
        # Imported here, not at the top: pywebpush pulls in aiohttp, and the API, which only
        # needs the key, should not pay for it at every cold start. The notifier builds its
        # sender during its init phase, so no notification waits for the import.
        import pywebpush
        import requests

        self._requests = requests
        self._pywebpush = pywebpush
        self._vapid = vapid
        self._subject = subject
        self._local = threading.local()

    def _session(self) -> Any:
        # A session per thread: connection reuse without sharing a pool across threads.
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._requests.Session()
        return session

    def send(
        self,
        push: PushKeys,
        payload: bytes,
        *,
        ttl: int,
        urgency: str,
        topic: str,
        timeout: float,
    ) -> DeliveryOutcome:
        pywebpush = self._pywebpush
        try:
            response = pywebpush.webpush(
                subscription_info=push.as_subscription_info(),
                data=payload,
                vapid_private_key=self._vapid,
                # A fresh dict each time: pywebpush fills in `aud` and `exp` in place.
                vapid_claims={"sub": self._subject},
                content_encoding="aes128gcm",
                ttl=ttl,
                timeout=timeout,
                headers={"Urgency": urgency, "Topic": topic},
                requests_session=self._session(),
            )
        except pywebpush.WebPushException as exc:
            if exc.response is None:
                return unreachable(exc.message)
            return judge_response(
                exc.response.status_code,
                f"push service answered {exc.response.status_code}",
                parse_retry_after(exc.response.headers.get("Retry-After")),
            )
        except self._requests.RequestException as exc:
            return unreachable(f"{type(exc).__name__}: {exc}")
        return judge_response(response.status_code)
