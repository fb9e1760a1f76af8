"""Who is calling: a Bearer key on the API, a signed session cookie on the review pages; and what each role may do.

submit: send media and read results. review: read results and reports, review page, decisions, audit.
admin: everything, and /metrics.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .keys import Caller, lookup

bearer = HTTPBearer(auto_error=False, description="An API key from `deepscreen keys create`")

SUBMIT = ("submit", "admin")
READ = ("submit", "review", "admin")
REVIEW = ("review", "admin")
ADMIN = ("admin",)


def require(*roles: str):
    async def dependency(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Caller:
        if cred is None or cred.scheme.lower() != "bearer":
            raise HTTPException(401, "missing API key: send Authorization: Bearer <key>",
                                headers={"WWW-Authenticate": "Bearer"})
        caller = lookup(request.app.state.engine, cred.credentials)
        if caller is None:
            raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        if caller.role not in roles:
            raise HTTPException(403, f"a {caller.role} key may not do this (needs {' or '.join(roles)})")
        return caller
    return dependency


def csrf_token(secret: str, session_id: str) -> str:
    """Bound to the session: a page from another site cannot know it, so it cannot post a decision for us."""
    return hmac.new(secret.encode(), b"csrf:" + session_id.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: str, session_id: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(secret, session_id), token)
