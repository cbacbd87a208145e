"""API keys and roles of the HTTP API (plain Python; the realtime service and the CLI use it).

A key is shown once at creation (`axiom apikey create`) and stored only as its SHA-256 hash
(keys are 256-bit random, so a fast hash is sufficient: there is nothing to brute-force).
Format: ``axk_<8 hex prefix>_<43 url-safe chars>``; the prefix finds the row, the hash
is compared in constant time.

Roles and permissions (the permission matrix):

=====================================  ==========  =====  ====
permission                             superuser   admin  user
=====================================  ==========  =====  ====
health (/health, /health/ready)        open        open   open
metrics (/metrics, if not public)      yes         yes    yes
monitor (/api/v1/monitoring/*)         yes         yes    yes
ingest (STOW-RS)                       yes         yes    no
manage_keys (user and admin keys)      yes         yes    no
audit (/api/v1/audit*)                 yes         yes    no
manage_superusers (superuser keys)     yes         no     no
=====================================  ==========  =====  ====

`user` is read-only (dashboards, monitoring); senders get an `admin` key or a JWT whose
role grants ingest. Keys are created and revoked with the CLI (local, operator access).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, insert, select, update

from axiom_dagster.store import audit

ROLES = ("superuser", "admin", "user")
PERMISSIONS: dict[str, frozenset[str]] = {
    "superuser": frozenset({"metrics", "monitor", "ingest", "manage_keys", "manage_superusers", "manage_exceptions", "audit"}),
    "admin": frozenset({"metrics", "monitor", "ingest", "manage_keys", "manage_exceptions", "audit"}),
    "user": frozenset({"metrics", "monitor"}),
}
KEY_PREFIX = "axk_"

# Kept apart from schema.metadata; migration 0002 creates this table explicitly.
auth_metadata = MetaData()
api_keys = Table(
    "api_keys",
    auth_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)


def has_permission(role: str | None, permission: str) -> bool:
    return permission in PERMISSIONS.get(role or "", frozenset())


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(engine, name: str, role: str, actor: str = "unknown") -> tuple[ApiKey, str]:
    """Create a key; returns the row and the secret (shown once, never stored). The audit
    entry (who, which key, role) commits in the same transaction."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        if conn.execute(select(api_keys.c.id).where(api_keys.c.name == name)).first():
            raise ValueError(f"an API key named {name!r} already exists")
        key_id = conn.execute(
            insert(api_keys).values(name=name, prefix=prefix, key_hash=_hash(secret), role=role, created_at=now)
        ).inserted_primary_key[0]
        audit.append(conn, actor, "apikey.created", name, {"role": role, "prefix": prefix})
    return ApiKey(key_id, name, prefix, role, now, None), secret


def revoke_key(engine, name_or_prefix: str, actor: str = "unknown") -> bool:
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        revoked = conn.execute(
            update(api_keys)
            .where((api_keys.c.name == name_or_prefix) | (api_keys.c.prefix == name_or_prefix))
            .where(api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(api_keys.c.name, api_keys.c.prefix)
        ).all()
        for name, prefix in revoked:
            audit.append(conn, actor, "apikey.revoked", name, {"prefix": prefix})
        return bool(revoked)


def list_keys(engine) -> list[ApiKey]:
    with engine.connect() as conn:
        rows = conn.execute(select(api_keys).order_by(api_keys.c.id)).all()
    return [ApiKey(r.id, r.name, r.prefix, r.role, r.created_at, r.revoked_at) for r in rows]


def verify_key(engine, key: str) -> ApiKey | None:
    """The active key matching `key`, or None."""
    if not key.startswith(KEY_PREFIX):
        return None
    prefix = key[len(KEY_PREFIX):].split("_", 1)[0]
    with engine.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.prefix == prefix)).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, _hash(key)):
        return None
    return ApiKey(row.id, row.name, row.prefix, row.role, row.created_at, row.revoked_at)
