"""Encryption of secrets at rest (Fernet, keyed from MATIH_ENCRYPTION_KEY)."""
from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache

from cryptography.fernet import Fernet
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(key_material: str) -> Fernet:
    digest = hashlib.sha256(key_material.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_json(value) -> str:
    return _fernet(settings.MATIH_ENCRYPTION_KEY).encrypt(json.dumps(value).encode()).decode()


def decrypt_json(token: str):
    return json.loads(_fernet(settings.MATIH_ENCRYPTION_KEY).decrypt(token.encode()))
