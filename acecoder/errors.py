"""The one error hierarchy of every acecoder service.

    AcecoderError                 (INTERNAL: our bug)
    ├── InvalidArgument           (INVALID_ARGUMENT: the request is malformed; say what to change)
    ├── NotFound                  (NOT_FOUND: no such job or resource)
    ├── FailedPrecondition        (FAILED_PRECONDITION: valid, but not in the current state)
    ├── ResourceExhausted         (RESOURCE_EXHAUSTED: queue full; retry later)
    ├── Unavailable               (UNAVAILABLE: starting, draining, or a backend lost)
    ├── Unauthenticated           (UNAUTHENTICATED: no bearer token, or not one we accept)
    ├── DeadlineExceeded          (DEADLINE_EXCEEDED: the caller's deadline passed first)
    └── RemoteError               (client side: a service we called answered an error status;
        ├── RemoteInvalidArgument  one class per status, each also the class above of its code,
        └── ...                    in `acecoder.remote_errors`: the one of them importing grpc)

Each class names its gRPC status code as a string, so this module never imports grpc; one
server interceptor turns them into `context.abort` (a RemoteError that escapes a servicer is
INTERNAL there: passing another service's status on would mislead the caller). A failing
*program* is never an error: syntax errors, timeouts and crashes are verdicts.
"""

from __future__ import annotations


class AcecoderError(Exception):
    """Base class; on its own it means a bug on our side."""

    grpc_code = "INTERNAL"


class InvalidArgument(AcecoderError, ValueError):
    grpc_code = "INVALID_ARGUMENT"


class NotFound(AcecoderError):
    grpc_code = "NOT_FOUND"


class FailedPrecondition(AcecoderError):
    grpc_code = "FAILED_PRECONDITION"


class ResourceExhausted(AcecoderError):
    grpc_code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        """Seconds after which a retry may be let in, when known (HTTP's Retry-After)."""


class Unavailable(AcecoderError):
    grpc_code = "UNAVAILABLE"


class Unauthenticated(AcecoderError):
    grpc_code = "UNAUTHENTICATED"


class DeadlineExceeded(AcecoderError):
    grpc_code = "DEADLINE_EXCEEDED"
