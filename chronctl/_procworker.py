"""Child side of the process executor: JSON lines in on stdin, JSON lines out.

The protocol runs on a private duplicate of the original stdout, and fd 1 is
pointed at stderr, so a job that prints cannot corrupt the replies.
Requests name an entrypoint; nothing is unpickled, ever.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Awaitable
from typing import Any

from .errors import exception_text
from .jobs import import_entrypoint

TRACEBACK_TAIL = 8 * 1024


def _serve(channel: Any) -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            func = import_entrypoint(request["entrypoint"], request.get("pythonpath"))
            result = func(*request.get("args", []), **request.get("kwargs", {}))
            if isinstance(result, Awaitable):
                import asyncio  # lazy: most children never run a coroutine; they start faster

                async def _wait(awaitable: Any = result) -> Any:
                    return await awaitable

                result = asyncio.run(_wait())
            reply = {"ok": True, "result": result}
            text = json.dumps(reply)
        except Exception as exc:
            text = json.dumps(
                {
                    "ok": False,
                    "error": exception_text(exc),
                    "traceback": "".join(traceback.format_exception(exc))[-TRACEBACK_TAIL:],
                }
            )
        channel.write(text + "\n")
        channel.flush()


def main() -> None:
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with os.fdopen(protocol_fd, "w", encoding="utf-8") as channel:
        _serve(channel)


if __name__ == "__main__":
    main()
