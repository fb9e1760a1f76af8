"""API keys: created by `deepscreen keys create`, shown once, stored only as a hash.

A key is 32 random bytes, so a plain SHA-256 of it cannot be brute-forced; a slow password hash (bcrypt, scrypt)
would add its cost to every request and protect nothing more.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from .store import api_keys

ROLES = ("submit", "review", "admin")
PREFIX = "dsk_"


@dataclass(frozen=True)
class Caller:
    key_id: str
    name: str
    role: str

    @property
    def actor(self) -> str:
        return f"{self.key_id} ({self.name})"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(engine: Engine, role: str, name: str = "") -> tuple[str, str]:
    """(key id, the key). The key itself is not stored and cannot be shown again."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: use one of {', '.join(ROLES)}")
    key_id = secrets.token_hex(4)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    with engine.begin() as conn:
        conn.execute(insert(api_keys).values(id=key_id, name=name or role, role=role, key_hash=hash_key(key),
                                             created_at=time.time()))
    return key_id, key


def list_keys(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(api_keys.c.id, api_keys.c.name, api_keys.c.role, api_keys.c.created_at,
                                   api_keys.c.revoked_at).order_by(api_keys.c.created_at)).mappings().all()
    return [dict(r) for r in rows]


def revoke_key(engine: Engine, key_id: str) -> bool:
    with engine.begin() as conn:
        n = conn.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                         .values(revoked_at=time.time())).rowcount
    return n == 1


def lookup(engine: Engine, key: str) -> Caller | None:
    """The caller a presented key belongs to, or None if it is unknown or revoked."""
    if not key or len(key) > 200:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(api_keys.c.id, api_keys.c.name, api_keys.c.role)
                           .where(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None))).first()
    return Caller(row.id, row.name, row.role) if row else None


def active_caller(engine: Engine, key_id: str) -> Caller | None:
    """For sessions: the key a session was opened with, if it has not been revoked since."""
    with engine.connect() as conn:
        row = conn.execute(select(api_keys.c.id, api_keys.c.name, api_keys.c.role)
                           .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))).first()
    return Caller(row.id, row.name, row.role) if row else None
