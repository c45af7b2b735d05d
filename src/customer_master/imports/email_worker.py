"""The e-mail worker of a large import (see `emails.py`): reads batches of cells, answers their problems.

Frames on stdin and stdout: a 4-byte big-endian length, then that many bytes of JSON; length 0 ends.
"""

import json
import sys

from customer_master.imports.emails import email_problems, frame


def main() -> None:
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = source.read(4)
        size = int.from_bytes(header, "big") if len(header) == 4 else 0
        if size == 0:
            break
        cells = json.loads(source.read(size))
        sink.write(frame(json.dumps(email_problems(cells)).encode()))
        sink.flush()
    sink.write(frame(b""))
    sink.flush()


if __name__ == "__main__":
    main()
