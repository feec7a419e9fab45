"""Errors the studio raises on purpose.

Every error a person can trigger (bad input, an unknown id, a busy conversation)
is one of these, so the CLI and the API can answer with a clear message and a
fitting status code instead of a stack trace.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base class: ``message`` is written for the person, not for a developer."""

    status_code = 400
    code = "studio_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(StudioError):
    """The request itself is wrong (empty, too long, malformed)."""

    status_code = 422
    code = "invalid_input"


class NotFoundError(StudioError):
    """An id that names nothing: unknown session, conversation, checkpoint."""

    status_code = 404
    code = "not_found"


class InvalidStateError(StudioError):
    """The request is well formed but the conversation is not in a state for it."""

    status_code = 409
    code = "invalid_state"


class ConversationBusyError(StudioError):
    """Another process is already the writer of this conversation."""

    status_code = 409
    code = "conversation_busy"


class DatabaseUnavailableError(StudioError):
    """The database cannot be reached right now (stopped, restarting, unreachable).

    Temporary by nature: the studio reconnects (and restarts the embedded server it started)
    by itself, so the person is told to try again in a moment rather than shown a crash.
    """

    status_code = 503
    code = "database_unavailable"
