"""The router's HTTP API as its clients see it: paths, the default address, the ready line.

Declared once here, below the router and its clients, so the router serves these paths and
the clients (load generator, ``kairos scale``, ``kairos advise``, the router launcher) call
them without either importing the other.
"""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Where a router started with the defaults listens (the client commands' default --url).
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"

# The router prints this, then its URL, on its first stdout line once it listens.
LISTEN_LINE = "kairos router listening on"
# ``kairos serve --cells``: the balancer's URL follows, in the same place as the router's.
LISTEN_CELLS = "kairos cells listening on"

HEALTH_LIVE_PATH = "/v2/health/live"
HEALTH_READY_PATH = "/v2/health/ready"
TRAFFIC_PATH = "/v2/traffic"
ADMIN_POOL_PATH = "/v2/admin/pool"
OPENAPI_PATH = "/v2/openapi.json"
METRICS_PATH = "/metrics"


def model_path(model: str) -> str:
    """The model's metadata; ``+ "/infer"`` is its inference endpoint."""
    return f"/v2/models/{model}"
