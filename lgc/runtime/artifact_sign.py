"""Ed25519 signatures over an artifact's digest table, with the `cryptography` package.

A signature covers the table of every member's name, size and SHA-256 (so every byte of
the artifact, manifest included), prefixed by a context string so that it cannot be taken
for a signature of anything else. Keys are PEM files: PKCS#8 private keys (`lgc keygen`, or
`openssl genpkey -algorithm ed25519`) and SubjectPublicKeyInfo public keys; a trusted-keys
file may hold several public keys.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re

from ..errors import InputError, SignatureError

SCHEME = "ed25519"
CONTEXT = b"lgc-artifact-signature-v1\n"
_PUBLIC_PEM = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)


def _crypto():
    """cryptography's Ed25519 and serialization modules (imported when keys are used)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    return ed25519, serialization


def _invalid_signature():
    from cryptography.exceptions import InvalidSignature
    return InvalidSignature


def key_id(public_key) -> str:
    """A short fingerprint of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    _, ser = _crypto()
    raw = public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate(path) -> tuple[str, str]:
    """Write a new private key to `path` (PEM, mode 0600) and its public key next to it
    (KEY.pem -> KEY.pub.pem); returns (public key path, key id). Never overwrites."""
    ed25519, ser = _crypto()
    path = os.fspath(path)
    pub_path = (path[:-4] if path.endswith(".pem") else path) + ".pub.pem"
    for p in (path, pub_path):
        if os.path.exists(p):
            raise InputError(f"{p} exists; not overwriting a key")
    key = ed25519.Ed25519PrivateKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    with open(pub_path, "wb") as f:
        f.write(key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))
    return pub_path, key_id(key.public_key())


def private_key(source):
    """An Ed25519 private key from a PEM file path (or an Ed25519PrivateKey, returned as is)."""
    ed25519, ser = _crypto()
    if isinstance(source, ed25519.Ed25519PrivateKey):
        return source
    path = os.fspath(source)
    try:
        with open(path, "rb") as f:
            key = ser.load_pem_private_key(f.read(), password=None)
    except OSError as e:
        raise InputError(f"signing key {path}: {e.strerror}") from None
    except (ValueError, TypeError) as e:
        raise InputError(f"signing key {path}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise InputError(f"signing key {path}: not an Ed25519 key (make one with `lgc keygen`)")
    return key


def public_keys(sources) -> dict:
    """{key id: Ed25519PublicKey} from public keys, PEM bytes, or PEM files (several keys each);
    such a dict is returned as it is."""
    ed25519, ser = _crypto()
    if isinstance(sources, dict):
        return sources
    if isinstance(sources, (str, os.PathLike, bytes, ed25519.Ed25519PublicKey)):
        sources = [sources]
    keys = {}
    for src in sources:
        if isinstance(src, ed25519.Ed25519PublicKey):
            keys[key_id(src)] = src
            continue
        what = "trusted key data" if isinstance(src, bytes) else f"trusted keys {os.fspath(src)}"
        if isinstance(src, bytes):
            pem = src
        else:
            try:
                with open(os.fspath(src), "rb") as f:
                    pem = f.read()
            except OSError as e:
                raise InputError(f"{what}: {e.strerror}") from None
        blocks = _PUBLIC_PEM.findall(pem)
        if not blocks:
            raise InputError(f"{what}: no PEM public key in it (`lgc keygen` writes KEY.pub.pem)")
        for block in blocks:
            try:
                key = ser.load_pem_public_key(block)
            except ValueError as e:
                raise InputError(f"{what}: unreadable public key ({e})") from None
            if not isinstance(key, ed25519.Ed25519PublicKey):
                raise InputError(f"{what}: holds a key that is not Ed25519")
            keys[key_id(key)] = key
    return keys


def public_pems(keys: dict) -> list[str]:
    """The keys as PEM text (to send them to cluster workers)."""
    _, ser = _crypto()
    return [k.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo).decode()
            for k in keys.values()]


def sign(table: bytes, key) -> dict:
    """The signature record for a digest table (canonical bytes)."""
    return {"scheme": SCHEME, "key": key_id(key.public_key()),
            "value": base64.b64encode(key.sign(CONTEXT + table)).decode()}


def verify(table: bytes, record, trusted: dict, where: str) -> str:
    """Check `record` (digest.json's "signature") against the trusted keys; returns the key id.
    SignatureError when unsigned, signed by an untrusted key, or not matching the table."""
    if record is None:
        raise SignatureError(f"{where}: unsigned, and only artifacts signed by a trusted key may "
                             f"load (sign with `lgc compile --sign KEY`)")
    if not isinstance(record, dict) or record.get("scheme") != SCHEME \
            or not isinstance(record.get("key"), str) or not isinstance(record.get("value"), str):
        raise SignatureError(f"{where}: digest.json field 'signature' is malformed")
    kid = record["key"]
    key = trusted.get(kid)
    if key is None:
        raise SignatureError(f"{where}: signed by key {kid[:16]!r}, which is not a trusted key")
    try:
        key.verify(base64.b64decode(record["value"], validate=True), CONTEXT + table)
    except (ValueError, _invalid_signature()):      # binascii.Error is a ValueError
        raise SignatureError(f"{where}: signature by key {kid} does not match the content "
                             f"(tampered with after signing)") from None
    return kid
