"""Password hashing (argon2id) and the minimum rules a panel password must meet."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # hashing cost grows with length; nobody types more
MIN_DISTINCT_CHARACTERS = 5

# argon2-cffi's defaults are RFC 9106's "low memory" profile: argon2id, t=3, m=64 MiB, p=4.
_hasher = PasswordHasher(type=Type.ID)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@cache
def _dummy_hash() -> str:
    return _hasher.hash("not a password of anyone: only spends the same time")


def spend_verification_time(password: str) -> None:
    """Verify against a dummy hash so that an unknown username takes as long as a wrong password."""
    verify_password(_dummy_hash(), password)


def password_problem(password: str, username: str | None = None) -> str | None:
    """Why ``password`` is too weak for the panel, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"The password must have at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"The password must have at most {MAX_PASSWORD_LENGTH} characters."
    if len(set(password)) < MIN_DISTINCT_CHARACTERS:
        return f"The password must use at least {MIN_DISTINCT_CHARACTERS} different characters."
    if username and username.lower() in password.lower():
        return "The password must not contain the username."
    return None
