"""How a command-line process stops on SIGTERM: as a normal exit with status 143 (128 + 15, as the shell
reports it). SIGTERM's default ends a process without its exit hooks, which stop the embedded PostgreSQL
when this process is its last user; a normal exit runs them, and the transaction in flight rolls back.
`serve` and `deliver` install handlers of their own (a stop there is exit 0).
"""

import asyncio
import signal
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
EXIT_STATUS = 128 + signal.SIGTERM


def exit_normally_on_sigterm() -> None:
    """Outside an event loop: the signal ends the process by `SystemExit` where it finds it."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(EXIT_STATUS))


def run_stoppable(work: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(work)`; SIGTERM cancels `work` at its next `await`, then the process exits with 143.

    Inside the event loop the signal is taken by the loop, not raised where it finds the code: an exception
    raised from a signal handler may land inside the database driver's protocol code and leave it half done.
    Cancelled, the work unwinds as from any error (its transaction rolls back, its connections close).
    """
    stopped = False

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None

        def stop() -> None:
            nonlocal stopped
            stopped = True
            task.cancel()

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)
        return await work

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if stopped:
            sys.exit(EXIT_STATUS)
        raise
    finally:
        exit_normally_on_sigterm()  # closing the loop gave SIGTERM its default back
