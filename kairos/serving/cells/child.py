"""One cell's router process: ``python -m kairos.serving.cells.child`` reads its cell's
``RouterConfig``, the scenario and the headroom factory (pickled, from the cell set on stdin)
and runs the router until SIGTERM, exactly as ``kairos serve`` runs one.

Why a pickle on stdin and not a command line: the cell set already holds the checked config
(every setting, the cell's pool); rebuilding ``kairos serve``'s command line from it would be a
second copy of every option. The pipe is private to the two processes.
"""

from __future__ import annotations

import pickle
import sys

from kairos.aio import run_event_loop
from kairos.errors import KairosError
from kairos.serving.router.router import run_router


def main() -> int:
    # A warm spare waits here, its imports done, until the cell set sends a cell or closes.
    data = sys.stdin.buffer.read()
    if not data:
        return 0
    cfg, scenario, headroom = pickle.loads(data)
    try:
        run_event_loop(run_router(cfg, scenario, headroom=headroom))
    except KairosError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
