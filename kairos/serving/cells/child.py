"""One cell's router process: ``python -m kairos.serving.cells.child`` reads the headroom
factory, then its cell's ``RouterConfig`` and the scenario (pickled, from the cell set on stdin)
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
    stdin = sys.stdin.buffer
    try:
        # The headroom factory comes first, as soon as the process starts: loading it imports
        # its code, so that a warm spare has done every import before its cell comes.
        headroom = pickle.load(stdin)
        cfg, scenario = pickle.load(stdin)  # a warm spare waits here for its cell
    except EOFError:  # the cell set closed without a cell for it
        return 0
    try:
        run_event_loop(run_router(cfg, scenario, headroom=headroom))
    except KairosError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
