"""App JWTs, installation tokens and the Authorization header, checked like GitHub does."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TOKEN_PREFIX = "ghs_"  # noqa: S105 (a prefix, not a secret)
TOKEN_RANDOM_BYTES = 27
# https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app
JWT_CLOCK_SKEW_SECONDS = 60
JWT_MAX_LIFETIME_SECONDS = 600
RSA_KEY_BITS = 2048


class JWTError(Exception):
    """An App JWT GitHub would refuse (answered with 401)."""


class Scheme(Enum):
    """How a request authenticated itself."""

    NONE = "none"
    JWT = "jwt"
    TOKEN = "token"  # noqa: S105 (a scheme name)


@dataclass(frozen=True)
class Credential:
    """What an `Authorization` header carries."""

    scheme: Scheme
    value: str


@dataclass(frozen=True)
class KeyPair:
    """An App's RSA key: the private PEM for the App, the public PEM for the stand-in."""

    private_pem: str
    public_pem: str


def generate_key_pair() -> KeyPair:
    """Make an RSA key like the one GitHub lets an App download."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return KeyPair(private_pem=private_pem, public_pem=public_pem)


def new_installation_token() -> str:
    """A random `ghs_` token, the shape GitHub uses for installation tokens."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_RANDOM_BYTES)[:36]


def parse_authorization(header: str | None) -> Credential:
    """Split `Bearer <jwt>`, `Bearer <token>` or `token <token>` into a credential."""
    if not header or " " not in header:
        return Credential(Scheme.NONE, "")
    kind, _, value = header.partition(" ")
    value = value.strip()
    kind = kind.lower()
    if kind == "bearer" and value.count(".") == 2:
        return Credential(Scheme.JWT, value)
    if kind in ("bearer", "token"):
        return Credential(Scheme.TOKEN, value)
    return Credential(Scheme.NONE, "")


def parse_basic_password(header: str | None) -> str | None:
    """Return the password of a Basic `Authorization` header (git sends the token there)."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep else None


def jwt_issuer(token: str) -> str:
    """Read `iss` (the App id) without verifying, to pick the key to verify with."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise JWTError(f"malformed JWT: {exc}") from exc
    return str(claims.get("iss", ""))


def verify_app_jwt(token: str, public_pem: str, now: float) -> Mapping[str, object]:
    """Verify signature, `iat` and `exp` the way GitHub does; return the claims."""
    try:
        claims: dict[str, object] = jwt.decode(
            token,
            public_pem,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False, "require": ["iat", "exp", "iss"]},
        )
    except jwt.PyJWTError as exc:
        raise JWTError(f"JWT not accepted: {exc}") from exc
    iat, exp = claims["iat"], claims["exp"]
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        raise JWTError("iat and exp must be numbers")
    if iat > now + JWT_CLOCK_SKEW_SECONDS:
        raise JWTError(
            "'Issued at' claim ('iat') must be an Integer representing a time in the past"
        )
    if exp <= now:
        raise JWTError("'Expiration time' claim ('exp') must be a numeric value in the future")
    if exp - iat > JWT_MAX_LIFETIME_SECONDS:
        raise JWTError("'Expiration time' claim ('exp') is too far in the future")
    return claims
