"""How a command-line process stops on SIGTERM: as a normal exit with status 143 (128 + 15, as the shell
reports it). SIGTERM's default ends a process without its exit hooks, which stop the embedded PostgreSQL
when this process is its last user; a normal exit runs them, and a transaction not yet committed rolls back.
`serve` and `deliver` install handlers of their own (a stop there is exit 0).
"""

import asyncio
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")
EXIT_STATUS = 128 + signal.SIGTERM


def exit_normally_on_sigterm() -> None:
    """Outside an event loop: the signal ends the process by `SystemExit` where it finds it."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit)


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.exit(EXIT_STATUS)


def run_stoppable(work: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(work)`; a SIGTERM meanwhile cancels `work` at its next `await`, then stops the process as
    the handler before would have (`serve`: exit 0; the other commands: 143).

    The signal is not raised where it finds the code, which may be inside the database driver's protocol
    code: it cancels the work, which unwinds as from any error (its connections close, a transaction not yet
    committed rolls back), as `asyncio.run` does with Ctrl+C. A stop is never lost: one that comes when the
    work is done (or has not begun) still stops the process afterwards.
    """
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return asyncio.run(work)
    stopped = False
    task: asyncio.Task[T] | None = None

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped
        stopped = True
        if task is not None and not task.done():
            task.cancel()
            task.get_loop().call_soon_threadsafe(lambda: None)  # wakes the loop if it waits in select()

    async def main() -> T:
        nonlocal task
        task = asyncio.current_task()
        if stopped:
            raise asyncio.CancelledError
        return await work

    previous: Callable[[int, FrameType | None], Any] | int | None = signal.signal(signal.SIGTERM, stop)
    try:
        result = asyncio.run(main())
    except asyncio.CancelledError:
        if not stopped:
            raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        work.close()  # not awaited when the stop came before it began; a no-op otherwise
    if stopped:
        (previous if callable(previous) else _exit)(signal.SIGTERM, None)
        sys.exit(EXIT_STATUS)  # a previous handler that returned
    return result
