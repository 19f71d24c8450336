"""Who may do what: each student's and the instructor's random token, kept hashed in the database and
in the clear only in tokens.json (mode 0600, for the instructor to hand out); a presented token
checked against every hash in constant time; the CSRF token that a cookie-borne POST must repeat."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .classfile import INSTRUCTOR, ClassFile
from .store import Store

TOKENS = "tokens.json"


@dataclass(frozen=True)
class User:
    name: str
    role: str  # "student" or "instructor"
    token_hash: str

    @property
    def instructor(self) -> bool:
        return self.role == INSTRUCTOR


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(store: Store, klass: ClassFile, data: Path) -> dict[str, str]:
    """Every user of the class gets a token, kept from tokens.json where one was issued before, so
    links handed out stay good across restarts; users no longer in the class lose theirs."""
    path = data / TOKENS
    try:
        old = json.loads(path.read_text())
        old = old if isinstance(old, dict) else {}
    except (OSError, ValueError):
        old = {}
    known = {u["name"]: u["token_hash"] for u in store.users()}
    tokens: dict[str, str] = {}
    for name in [*klass.students, INSTRUCTOR]:
        token = old.get(name)
        if not isinstance(token, str) or known.get(name) != digest(token):
            token = secrets.token_urlsafe(24)
        tokens[name] = token
        store.set_user(name, INSTRUCTOR if name == INSTRUCTOR else "student", digest(token))
    store.drop_users_except(tokens)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(tokens, f, indent=1)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return tokens


class Users:
    """The users as the database has them, for the requests to be checked against."""

    def __init__(self, store: Store, secret: bytes):
        self._users = [User(u["name"], u["role"], u["token_hash"]) for u in store.users()]
        self._secret = secret

    def find(self, token: Optional[str]) -> Optional[User]:
        if not token or len(token) > 200:
            return None
        presented = digest(token)
        found = None
        for u in self._users:  # every hash compared, in constant time each: no early exit tells how close a guess was
            if hmac.compare_digest(u.token_hash, presented):
                found = u
        return found

    def names(self) -> list[str]:
        return [u.name for u in self._users if not u.instructor]

    def csrf(self, user: User) -> str:
        return hmac.new(self._secret, user.token_hash.encode(), hashlib.sha256).hexdigest()[:32]

    def csrf_ok(self, user: User, presented: Optional[str]) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf(user), presented or "")
