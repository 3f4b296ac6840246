"""Offline verification of latchkey access tokens (RFC 9068) for Python resource
servers, following latchkey's revocation feed.

>>> verifier = create_verifier("https://auth.example.com", "https://api.example.com",
...                            resource_server=("orders-api", "its secret"))
>>> claims = verifier.verify(token)            # or: await verifier.averify(token)
"""

from ._verifier import (
    MAX_TOKEN_BYTES,
    Claims,
    KeyCache,
    RevokedSet,
    Verifier,
    VerifyError,
    bearer,
    check_header,
    create_verifier,
    create_verifier_async,
    refusal,
    require_step_up,
    step_up_challenge,
)

__all__ = [
    "MAX_TOKEN_BYTES",
    "Claims",
    "KeyCache",
    "RevokedSet",
    "Verifier",
    "VerifyError",
    "bearer",
    "check_header",
    "create_verifier",
    "create_verifier_async",
    "refusal",
    "require_step_up",
    "step_up_challenge",
]
