"""One exception tree for roomtape. HTTP status codes are assigned only in ``roomtape.api``.

```
RoomtapeError                 base; ``retryable`` says whether trying again may succeed
├── InvalidInput              the request is malformed or out of range (nothing was changed)
├── Unauthenticated           no credentials, or credentials that are not valid
├── Forbidden                 valid credentials, but not for this object
├── NotFound                  the object does not exist (or is not visible to the caller)
├── Conflict                  the object's state does not allow the operation now
└── Unavailable               a dependency is down; retryable
```
"""

from __future__ import annotations


class RoomtapeError(Exception):
    """Base of every error roomtape raises on purpose."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable


class InvalidInput(RoomtapeError):
    """The input is malformed, of the wrong type or out of range; nothing was changed."""


class Unauthenticated(RoomtapeError):
    """Credentials are missing or not valid."""


class Forbidden(RoomtapeError):
    """The credentials are valid but do not grant access to this object."""


class NotFound(RoomtapeError):
    """The object does not exist or is not visible to the caller."""


class Conflict(RoomtapeError):
    """The object's current state does not allow the operation."""


class Unavailable(RoomtapeError):
    """A dependency (database, storage, broker) is unreachable; a retry may succeed."""

    retryable = True
