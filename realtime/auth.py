"""HTTP authentication: API keys (hashed in the state store) and HS256 JWT bearer tokens.

Send either as ``Authorization: Bearer <key or token>`` (or an API key as ``X-API-Key``).
A JWT must carry ``sub``, ``exp`` and ``role`` (superuser | admin | user), and ``aud``/``iss``
when configured. Roles map to permissions as in axiom_dagster.apikeys.PERMISSIONS.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import jwt
from fastapi import HTTPException, Request

from axiom_dagster.store.apikeys import KEY_PREFIX, ROLES, has_permission, verify_key
from axiom_dagster.config.listeners import AuthConfig


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    kind: str  # api_key | jwt


class Authenticator:
    CACHE_SECONDS = 5.0  # a revoked key stops working within this time

    def __init__(self, engine, config: AuthConfig):
        self.engine = engine
        self.config = config
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def authenticate(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        token = None
        if header[:7].lower() == "bearer ":
            token = header[7:].strip()
        elif request.headers.get("x-api-key"):
            token = request.headers["x-api-key"].strip()
        if not token:
            return None
        if token.startswith(KEY_PREFIX):
            return self._api_key(token)
        return self._jwt(token)

    def _api_key(self, token: str) -> Principal | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(token)
        if hit and hit[0] > now:
            return hit[1]
        key = verify_key(self.engine, token)
        principal = Principal(f"apikey:{key.name}", key.role, "api_key") if key else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (now + self.CACHE_SECONDS, principal)
        return principal

    def _jwt(self, token: str) -> Principal | None:
        if not self.config.jwt_secret:
            return None
        try:
            claims = jwt.decode(
                token, self.config.jwt_secret, algorithms=[self.config.jwt_algorithm],
                audience=self.config.jwt_audience, issuer=self.config.jwt_issuer,
                options={"require": ["exp", "sub"], "verify_aud": self.config.jwt_audience is not None},
            )
        except jwt.PyJWTError:
            return None
        role = claims.get("role")
        if role not in ROLES:
            return None
        return Principal(f"jwt:{claims['sub']}", role, "jwt")


def issue_jwt(secret: str, subject: str, role: str, ttl_seconds: int = 3600, algorithm: str = "HS256", **extra) -> str:
    """Make a token (tests and `axiom` tooling; production tokens come from your IdP)."""
    now = int(time.time())
    return jwt.encode({"sub": subject, "role": role, "iat": now, "exp": now + ttl_seconds, **extra}, secret, algorithm=algorithm)


def requirer(auth: Authenticator):
    """FastAPI dependency factory: `Depends(require("ingest"))`."""

    def require(permission: str):
        def dependency(request: Request) -> Principal:
            principal = auth.authenticate(request)
            if principal is None:
                raise HTTPException(401, "missing or invalid credentials (API key or bearer token)",
                                    headers={"WWW-Authenticate": "Bearer"})
            if not has_permission(principal.role, permission):
                raise HTTPException(403, f"role {principal.role!r} lacks the {permission!r} permission")
            request.state.principal = principal
            return principal

        return dependency

    return require
