"""A FastAPI dependency (``pip install latchkey-verify[fastapi]``)::

    authenticated = Authenticated(verifier)
    step_up = Authenticated(verifier, step_up_max_age=900)

    @app.get("/orders")
    async def orders(claims: dict = Depends(authenticated)): ...

A refused token answers 401 (503 while the feed is stale) with ``WWW-Authenticate``
(RFC 6750 §3; RFC 9470 §3 for step-up).
"""

from __future__ import annotations

from typing import Optional

from fastapi import HTTPException, Request

from ._verifier import Claims, Verifier, VerifyError, refusal


class Authenticated:
    """The dependency: the verified claims, or an ``HTTPException`` with the refusal."""

    def __init__(self, verifier: Verifier, step_up_max_age: Optional[int] = None):
        self.verifier = verifier
        self.step_up_max_age = step_up_max_age

    async def __call__(self, request: Request) -> Claims:
        try:
            return await self.verifier.aauthenticate(request.headers.get("authorization"), self.step_up_max_age)
        except VerifyError as e:
            status, headers, body = refusal(e)
            raise HTTPException(status_code=status, detail=body, headers=headers) from e
