"""The token fields of the token document, encrypted with AES-256-GCM (docs/decisions/008).

Key: BLING_TOKEN_KEY, the urlsafe base64 of 32 random bytes (Secret Manager secret `bling-token-key`, mapped into
the functions that call Bling; the scheduler does not get it). A stored value is `v1:<urlsafe b64(nonce ‖
ciphertext ‖ tag)>`; the associated data binds it to its document and field, so a ciphertext copied to another
field or document does not decrypt. A value without the prefix was written before encryption: it is read as plain
text once and re-written encrypted by the next write of the pair (upgrade path).
"""
from __future__ import annotations

import base64
import binascii
import functools
import os

from shared import log
from shared.errors import ConfigurationError

_PREFIX = "v1:"
_NONCE_BYTES = 12  # the size GCM is specified for; random per encryption (a key encrypts a few values a day)


class TokenKeyError(ConfigurationError):
    """BLING_TOKEN_KEY is missing, malformed, or not the key the stored token was encrypted with."""


def is_encrypted(value: str) -> bool:
    return isinstance(value, str) and value.startswith(_PREFIX)


def encrypt(plain: str, context: str, key_text: str) -> str:
    """key_text: BLING_TOKEN_KEY (Settings.bling_token_key)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_decode_key(key_text)).encrypt(nonce, plain.encode("utf-8"), context.encode("utf-8"))
    return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def decrypt(stored: str, context: str, key_text: str) -> str:
    """The plain value of a stored field; a legacy plain-text value is returned as it is. key_text: as in encrypt."""
    if not stored or not is_encrypted(stored):
        return stored or ""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        raw = base64.urlsafe_b64decode(stored[len(_PREFIX):].encode("ascii"))
        cipher = AESGCM(_decode_key(key_text))
        plain = cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8"))
    except (InvalidTag, ValueError, binascii.Error):
        raise TokenKeyError("BLING_TOKEN_KEY does not decrypt the stored Bling token: deploy the key it was "
                            "written with (Secret Manager secret bling-token-key), or re-authorize through the "
                            "auth function's /start to store a new pair under the current key") from None
    value = plain.decode("utf-8")
    log.register_secret(value)
    return value


@functools.lru_cache(maxsize=4)
def _decode_key(text: str) -> bytes:
    if not text:
        raise TokenKeyError("BLING_TOKEN_KEY is not set: the functions that call Bling need the key of the stored "
                            "token (Secret Manager secret bling-token-key; locally the stack generates one)")
    log.register_secret(text)
    try:
        key = base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        key = b""
    if len(key) != 32:
        raise TokenKeyError("BLING_TOKEN_KEY is not the urlsafe base64 of 32 bytes (AES-256); generate one with "
                            "python -c 'import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())'")
    return key


def new_key() -> str:
    """A fresh key in the BLING_TOKEN_KEY format (the local stack and the test fixtures make one per stack)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")
