"""SIGTERM to a command-line process that works in an event loop (`stopping.run_stoppable`): the work is
cancelled at its next await and unwinds, then the process stops as its handler before said — 143 for the
CLI's commands, 0 for `serve` — and a stop is never lost, even when the work swallows the cancellation.
Each case runs in a process of its own: signals go to a process's main thread."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys, threading
    from customer_master.stopping import exit_normally_on_sigterm, run_stoppable

    mode = sys.argv[1]
    if mode == "serve":
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    else:
        exit_normally_on_sigterm()

    async def work(stop_myself: bool = True) -> str:
        try:
            if stop_myself:
                os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0 if mode == "thread" else 10)
            print("not cancelled")
            return "done"
        except asyncio.CancelledError:
            print("cancelled")
            if mode == "swallow":
                return "swallowed"
            raise
        finally:
            print("unwound", flush=True)

    if mode == "thread":
        results = []
        thread = threading.Thread(target=lambda: results.append(run_stoppable(work(stop_myself=False))))
        thread.start()
        thread.join()
        print(results[0])
    else:
        print(run_stoppable(work()))
    print("went on")
    """
)


@pytest.mark.parametrize(
    ("mode", "status", "output"),
    [
        ("cli", 143, "cancelled\nunwound\n"),
        ("serve", 0, "cancelled\nunwound\n"),
        ("swallow", 143, "cancelled\nunwound\n"),
        ("thread", 0, "not cancelled\nunwound\ndone\nwent on\n"),
    ],
)
def test_sigterm_cancels_the_work_then_stops_as_the_handler_before_said(mode: str, status: int, output: str) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (status, output), done.stderr
