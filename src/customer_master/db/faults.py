"""What a lost database connection is, and when a connection can no longer be trusted.

The one home of these rules: the request transaction (`session.Database.transaction`), the error
handlers (`app.py`) and the CLI all ask here.
"""

import asyncpg
from asyncpg.exceptions._base import DataError as ArgumentError  # a query argument its codec refused
from sqlalchemy import exc as sa

# The server or the network went away, or a new connection could not be made.
_LOST = (
    OSError,  # refused, reset, unreachable, timed out, no such host, a socket file gone while the server restarts
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.InternalClientError,  # the protocol is out of step (e.g. a FATAL message reached an idle connection)
    asyncpg.AdminShutdownError,  # 57P01: pg_terminate_backend, a fast shutdown
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.CannotConnectNowError,  # 57P03: the server is starting up or shutting down
    sa.OperationalError,
    sa.InterfaceError,
    sa.TimeoutError,  # no pooled connection became free in time: the database is saturated
)


# What the driver raises by itself (not wrapped by SQLAlchemy), lost connection or not.
DRIVER_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


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
    """The database is unreachable or the connection was lost mid-request: a 503, and a retry is safe."""
    for error in _chain(exc):
        if isinstance(error, asyncpg.InterfaceError) and not isinstance(error, ArgumentError):
            return True  # the connection is closed, or another operation is in progress on it
        if isinstance(error, _LOST) or (isinstance(error, sa.DBAPIError) and error.connection_invalidated):
            return True
    return False


def leaves_connection_clean(exc: BaseException) -> bool:
    """Whether a connection can be rolled back and reused after `exc` ended the work on it.

    An error raised between statements (a rule of ours, a request that failed validation, a bug) or one
    the server reported in an orderly way (a unique violation) leaves the protocol idle. After a lost
    connection, an error of the driver itself, or an interruption (a cancelled task) an operation may
    still be in flight on it, and the next request must not inherit it.
    """
    if is_connection_lost(exc) or not isinstance(exc, Exception):
        return False
    return not any(isinstance(error, asyncpg.InterfaceError) for error in _chain(exc))
