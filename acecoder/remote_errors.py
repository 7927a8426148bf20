"""What a client raises when an acecoder service answers with an error status (google
api-core's `from_grpc_error`): one class per status, each both the matching `acecoder.errors`
class and a `grpc.RpcError` with the original's `code()`, `details()` and metadata.

    RemoteError(AcecoderError, grpc.RpcError)  (any other status: UNKNOWN, CANCELLED, ...)
    ├── RemoteInvalidArgument       (InvalidArgument)
    ├── RemoteNotFound              (NotFound)
    ├── RemoteFailedPrecondition    (FailedPrecondition)
    ├── RemoteResourceExhausted     (ResourceExhausted; `retry_after` from the trailer)
    ├── RemoteUnavailable           (Unavailable)
    │   └── RemoteNotReady          (a client's `wait_until_ready` ran out of time)
    ├── RemoteUnauthenticated       (Unauthenticated)
    ├── RemotePermissionDenied      (PERMISSION_DENIED)
    ├── RemoteDeadlineExceeded      (DeadlineExceeded)
    └── RemoteInternal              (INTERNAL: the service's bug, or its log has more)

So `except InvalidArgument` catches a bad request whether this process or a server found it,
and `except grpc.RpcError` with `.code()` still works. A server never passes a remote error on
as its own status (the interceptor answers INTERNAL): a service that calls another maps what it
gets, so that a caller never sees, say, UNAUTHENTICATED for a token it did not send.
"""

from __future__ import annotations

from typing import Any

import grpc

from .errors import (
    AcecoderError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)


class RemoteError(AcecoderError, grpc.RpcError):
    """A call ended with an error status; this class alone for a status without its own."""

    grpc_code = "UNKNOWN"

    def __init__(self, error: grpc.RpcError) -> None:
        code = _ask(error, "code")
        if not isinstance(code, grpc.StatusCode):
            code = grpc.StatusCode.UNKNOWN
        details = _ask(error, "details")
        Exception.__init__(self, details or code.name)
        self.error = error
        """The grpc exception this one stands for."""
        self.grpc_code = code.name
        self._code = code
        self._details: str | None = details
        self._trailing = tuple(tuple(pair) for pair in _ask(error, "trailing_metadata") or ())
        self._initial = tuple(tuple(pair) for pair in _ask(error, "initial_metadata") or ())

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str | None:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._trailing

    def initial_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._initial

    def debug_error_string(self) -> str:
        return str(_ask(self.error, "debug_error_string") or "")


class RemoteInvalidArgument(RemoteError, InvalidArgument):
    grpc_code = "INVALID_ARGUMENT"


class RemoteNotFound(RemoteError, NotFound):
    grpc_code = "NOT_FOUND"


class RemoteFailedPrecondition(RemoteError, FailedPrecondition):
    grpc_code = "FAILED_PRECONDITION"


class RemoteResourceExhausted(RemoteError, ResourceExhausted):
    grpc_code = "RESOURCE_EXHAUSTED"

    def __init__(self, error: grpc.RpcError) -> None:
        super().__init__(error)
        self.retry_after = retry_after(self._trailing)
        """Seconds the server asked us to wait (its `retry-after` trailer), or None."""


class RemoteUnavailable(RemoteError, Unavailable):
    grpc_code = "UNAVAILABLE"


class RemoteNotReady(RemoteUnavailable):
    """No replica of a service came to serve in time (still starting or loading, or not
    there): UNAVAILABLE, with `details()` saying which service, where, and how long we
    waited; `error` is the health check's own failure."""

    def __init__(self, error: grpc.RpcError, message: str) -> None:
        super().__init__(error)
        Exception.__init__(self, message)
        self._code = grpc.StatusCode.UNAVAILABLE
        self.grpc_code = "UNAVAILABLE"
        self._details = message


class RemoteUnauthenticated(RemoteError, Unauthenticated):
    grpc_code = "UNAUTHENTICATED"


class RemotePermissionDenied(RemoteError):
    grpc_code = "PERMISSION_DENIED"


class RemoteDeadlineExceeded(RemoteError, DeadlineExceeded):
    grpc_code = "DEADLINE_EXCEEDED"


class RemoteInternal(RemoteError):
    grpc_code = "INTERNAL"


_BY_CODE: dict[grpc.StatusCode, type[RemoteError]] = {
    grpc.StatusCode[cls.grpc_code]: cls
    for cls in (RemoteInvalidArgument, RemoteNotFound, RemoteFailedPrecondition,
                RemoteResourceExhausted, RemoteUnavailable, RemoteUnauthenticated,
                RemotePermissionDenied, RemoteDeadlineExceeded, RemoteInternal)}


def from_grpc_error(error: grpc.RpcError) -> RemoteError:
    """The RemoteError of `error`'s status (`error` itself when it already is one)."""
    if isinstance(error, RemoteError):
        return error
    return _BY_CODE.get(_ask(error, "code"), RemoteError)(error)


def retry_after(metadata: Any) -> float | None:
    """The `retry-after` value (seconds) of trailing metadata, or None if absent or not a
    number."""
    for key, value in metadata or ():
        if key == "retry-after":
            try:
                seconds = float(value.decode() if isinstance(value, bytes) else value)
            except ValueError:
                return None
            return seconds if seconds >= 0 else None
    return None


def _ask(error: grpc.RpcError, method: str) -> Any:
    """`error.method()`, or None where this kind of RpcError has no such method."""
    get = getattr(error, method, None)
    return get() if callable(get) else None
