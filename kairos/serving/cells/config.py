"""The settings of a celled service (``kairos serve --cells N``): every default declared once.

A cell is a heterogeneous pool that one router serves; the cells sit behind a load balancer
(HAProxy), weighted by each cell's planned capacity. The router settings of every cell are the
``RouterConfig`` ``kairos serve`` builds; these are the balancer's and the cell set's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from kairos.registry import Registry
from kairos.serving.settings import Settings, setting

# The balancer's algorithm by Kairos's name -> HAProxy's ``balance`` line. Both honour the
# servers' weights: least-outstanding sends a query to the cell with the fewest open
# queries relative to its weight; weighted-random draws a cell in proportion to its weight
# (the two front splitters the celled simulator offers).
BALANCES: Registry[str] = Registry(
    "balance", "pass --balance least-outstanding (the default) or weighted-random."
)
BALANCES.add("least-outstanding", "leastconn")
BALANCES.add("weighted-random", "random(1)")

HAPROXY_INSTALL = "apt-get install -y haproxy (Debian/Ubuntu; or your system's haproxy package)"


@dataclass(frozen=True)
class CellSettings(Settings):
    """The balancer in front of the cells, and how the cell set looks after its routers."""

    cells: int | None = setting(None, "--cells")  # None: one router, no balancer
    # Write the balancer's configuration here for a balancer the user runs, instead of
    # starting HAProxy.
    balancer_config: str | None = setting(None, "--balancer-config")
    balance: str = setting("least-outstanding", "--balance")
    haproxy_bin: str = "haproxy"
    # Health checks of each router's /v2/health/ready: every health_interval_ms while the
    # cell is up, every health_fast_interval_ms while it is down or changing state (so a
    # restarted router is back in the balancer within that much of being ready), each given
    # health_timeout_ms; health_falls failures in a row mark a cell down, one success brings
    # it back. A router that is gone is marked down at its first refused connection instead,
    # so the checks of an up cell can be rare: each is a new connection and a request that
    # both HAProxy and the router pay for (checked every 250 ms, an idle cell cost HAProxy
    # 2.5 ms and its router 1.5 ms of CPU a second; every 2 s, an eighth as many checks).
    # The long timeout is for a router that is only busy: under overload its answer waits
    # behind hundreds of queries, and taking it out would turn a slow cell into 503s.
    health_interval_ms: int = 2_000
    health_fast_interval_ms: int = 250
    health_timeout_ms: int = 10_000
    health_falls: int = 3
    # A router process started ahead and idle (its code imported), so that a cell whose
    # router died restarts without paying Python's start-up again.
    warm_spare: bool = True
    # A query whose cell failed before answering (connection refused or closed, or a 503
    # from a draining or full router) is sent once more, to another cell: inference is
    # idempotent (the same inputs give the same answer and change nothing).
    retries: int = 1
    # What is retried: a connection refused (the router is gone), a connection closed with
    # no answer (it died with the query), a 503 (full or draining). The last two are HTTP
    # retries: HAProxy then copies every request's whole buffer before sending it, about
    # 0.045 ms of its CPU a query on the 2-core VM (benchmarks/bench_cells.py, part floor).
    retry_on: str = "conn-failure empty-response 503"
    # HAProxy retries only a request that fits in one buffer: the largest binary request of
    # the built-in models (batch 1000) is 116 KB. Larger buffers cost CPU per query.
    request_buffer_bytes: int = 131_072
    # HAProxy's threads: one carries thousands of queries a second, and on a small machine
    # more threads only contend with the routers for the same cores.
    balancer_threads: int = 1
    connect_timeout_ms: int = 2_000
    # HAProxy's http-reuse: "always" sends any request over an idle connection to the router
    # it picked, where "safe" (HAProxy's default) opens a new one for the first request of
    # every client connection. The routers keep connections open for 75 s and a request
    # whose reused connection fails is retried, so reuse costs no query.
    connection_reuse: str = "always"
    # A query may wait this long in a router (queue + service): the routers' own hang
    # timeouts answer first.
    server_timeout_s: float = 300.0
    max_connections: int = 8_000  # HAProxy needs 2 file descriptors per connection
    # A router that exits on its own is started again after this pause (its port is kept,
    # so the balancer's configuration does not change).
    restart_delay_s: float = 0.05
    # A cell removed is drained: no new queries, then this long at most for its open ones.
    drain_timeout_s: float = 30.0
    router_ready_timeout_s: float = 90.0
