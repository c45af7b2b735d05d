"""What a lost database connection is, and when a connection can no longer be trusted.

The one home of these rules: the request transaction (`session.Database.transaction`), the error
handlers (`app.py`, `web/core.py`) and the CLI's error messages all ask here.
"""

import asyncpg
from sqlalchemy import exc as sa


class DatabaseUnreachable(ConnectionError):
    """A new connection could not be made (refused, no such host, timed out, the socket file gone)."""


# The server or the network went away, or a new connection could not be made.
_LOST = (
    DatabaseUnreachable,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, also "the connection was closed mid-operation"
    asyncpg.InternalClientError,  # the protocol is out of step: a FATAL message reached an idle connection
    asyncpg.AdminShutdownError,  # 57P01: pg_terminate_backend, a fast shutdown
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.CannotConnectNowError,  # 57P03: the server is starting up or shutting down
    asyncpg.TooManyConnectionsError,  # 53300: the server takes no more connections for now
    sa.TimeoutError,  # no pooled connection became free in time: the database is saturated
)

# How asyncpg tells that a connection is closed: used after it was closed, or, for a read connection
# (`Database.read`), after its pool took it back because the server closed it.
_CLOSED_SIGNS = ("connection is closed", "connection has been released back to the pool")

# What the driver raises by itself (not wrapped by SQLAlchemy), lost connection or not.
DRIVER_ERRORS = (DatabaseUnreachable, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what SQLAlchemy wrapped (`orig`), and their causes: one level of each is not enough."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or any(error is known for known in seen):
            continue
        seen.append(error)
        pending += [getattr(error, "orig", None), error.__cause__]
    return seen


def is_connection_lost(exc: BaseException) -> bool:
    """The database is unreachable or the connection was lost mid-request: a 503, and a retry is safe.

    Not so an asyncpg `InterfaceError` about an operation in progress: two users of one connection are a
    bug (a 500, logged), whatever the connection's state.
    """
    for error in _chain(exc):
        if isinstance(error, _LOST) or (isinstance(error, sa.DBAPIError) and error.connection_invalidated):
            return True
        if isinstance(error, asyncpg.InterfaceError) and any(sign in str(error) for sign in _CLOSED_SIGNS):
            return True
    return False


def leaves_connection_clean(exc: BaseException) -> bool:
    """Whether a connection can be rolled back and reused after `exc` ended the work on it.

    An error raised between statements (a rule of ours, a request that failed validation, a bug) or one
    the server reported in an orderly way (a unique violation) leaves the protocol idle. After a lost
    connection, any error of the driver itself, or an interruption (a cancelled task) an operation may
    still be in flight on it, and the next request must not inherit it.
    """
    if is_connection_lost(exc) or not isinstance(exc, Exception):
        return False
    return not any(isinstance(error, asyncpg.InterfaceError) for error in _chain(exc))
