"""The pool served by Ray Serve, as its users would deploy it (benchmark code, needs ray[serve]).

A local multi-node Ray cluster stands in for the rented instances: one Ray node per
instance type, declaring the custom resource ``TYPE: count`` (one unit per instance, so
placement by resource puts exactly ``count`` replicas there), the label
``kairos.io/instance-type=TYPE`` and ``kairos-instance: count`` (one unit per instance of
any type). The head node runs Ray Serve's controller, its HTTP proxy and the ingress.

Two layouts of the replay worker code (``kairos.serving.worker.service.ReplayHandler``: the same
profile sampling and sleeps as a ``kairos worker``), each replica ``max_ongoing_requests=1``:

* ``per-type``: one deployment per instance type, its replicas placed by the type's
  resource. The ingress sends each request to one deployment, drawn with a fixed weight per
  deployment (its share of the pool's capacity over the mix, what a user sets after
  measuring each type); that deployment's request router (Ray Serve's default, power of
  two choices) picks the replica.
* ``pooled``: one deployment over the whole pool (replicas placed by ``kairos-instance``,
  each takes its instance type from its node's label), so the deployment's request router
  chooses among every instance: Ray Serve's default router, or ``KairosCostRouter``
  (``benchmarks/rayserve_router.py``).

The ingress answers the KServe v2 paths the load generator uses (model metadata, infer with
JSON or binary tensors) with the same bodies as ``kairos serve``; it reads the batch size from
the request's JSON part and forwards the body untouched. No Kairos code is on that path
except the replay handler inside the replicas.

``python -m benchmarks.rayserve_app --pool g4dn.xlarge=4 --port 8000`` starts a cluster, serves
and prints ``RAYSERVE_READY URL`` (it must run inside a private network namespace, see
``in_private_netns``); it stops everything on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from kairos.catalog import Pool
from kairos.profiles import default_profiles
from kairos.protocol.tensors import specs_as_dicts
from kairos.scenario import Scenario
from kairos.serving.worker.service import ReplayHandler, tighten_timer_slack
from kairos.serving.worker.stand_in import stand_in_signature
from kairos.sim.capacity import rough_capacity_qps

LABEL = "kairos.io/instance-type"
SLOT = "kairos-instance"
HEAD = "kairos-head"
READY_LINE = "RAYSERVE_READY"
PROBE_LINE = "RAYSERVE_PROBE"
LAYOUTS = ("per-type", "pooled")
ROUTERS = ("default", "kairos-cost")
ROUTER_CLASS = "benchmarks.rayserve_router:KairosCostRouter"
REPO_ROOT = Path(__file__).resolve().parent.parent
BINARY_HEADER = "inference-header-content-length"
GRACEFUL_WAIT_LOOP_S = 0.1  # see build_app


def ray_serve_missing() -> str:
    """Why Ray Serve cannot run here ('' when it can)."""
    try:
        with warnings.catch_warnings():  # Ray's own deprecation warnings, on import
            warnings.simplefilter("ignore", DeprecationWarning)
            import ray  # noqa: F401
            from ray import serve  # noqa: F401
            from ray.serve.request_router import RequestRouter  # noqa: F401
    except ImportError as exc:
        return f"ray[serve] is not installed ({exc}); pip install 'kairos[bench]'"
    return ""


def in_private_netns() -> bool:
    """True when loopback is this network namespace's only interface (Ray then binds only
    127.0.0.1; outside one it binds the machine's address, see docs/ray_serve.md)."""
    try:  # /proc/net/dev lists this namespace's interfaces (/sys/class/net may not)
        lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    except OSError:
        return False
    return {line.split(":")[0].strip() for line in lines} <= {"lo"}


def netns_command(argv: Sequence[str]) -> list[str]:
    """``argv`` re-run in a fresh network namespace with loopback up (needs root/unshare)."""
    return ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]


def netns_missing() -> str:
    """Why a private network namespace cannot be made here ('' when it can)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (util-linux, iproute2) is not installed"
    probe = subprocess.run(netns_command(["true"]), capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"cannot make a network namespace ({probe.stderr.strip()[:200]}); run as root"
    return ""


# --- the deployments -------------------------------------------------------------------------


def _node_instance_type() -> str:
    import ray

    value: Any = ray.get_runtime_context().get_node_labels().get(LABEL)
    if isinstance(value, list):
        value = value[0] if value else None
    if not value:
        raise RuntimeError(f"this node declares no {LABEL} label; start it with one")
    return str(value)


class ReplayReplica:
    """One instance: the replay worker's handler, one query at a time."""

    def __init__(self, model: str, instance_type: str | None, time_scale: float) -> None:
        from ray import serve

        self.instance_type = instance_type or _node_instance_type()
        profile = default_profiles().get(model, self.instance_type)
        seed = zlib.crc32(serve.get_replica_context().replica_id.unique_id.encode())
        self._handler = ReplayHandler(profile, time_scale, seed)
        self._slack_set: set[int] = set()

    async def __call__(
        self, batch: int, body: bytes, json_length: int | None
    ) -> tuple[bytes, float, str]:
        thread = threading.get_ident()
        if thread not in self._slack_set:  # the timer slack is per thread
            tighten_timer_slack()
            self._slack_set.add(thread)
        t0 = time.perf_counter()
        out = await self._handler.run(batch, body, json_length)
        return out, (time.perf_counter() - t0) * 1000.0, self.instance_type


class Ingress:
    """KServe v2 front: metadata, and infer forwarded to a weighted-random deployment."""

    def __init__(
        self,
        model: str,
        metadata: dict[str, Any],
        targets: dict[str, Any],
        weights: dict[str, float],
    ) -> None:
        self._model = model
        self._metadata = orjson.dumps(metadata)
        self._names = list(targets)
        self._handles = [targets[n] for n in self._names]
        self._weights = [weights[n] for n in self._names]
        self._infer_paths = {f"/v2/models/{model}/infer", f"/v2/models/{model}/versions/1/infer"}
        self._model_bytes = orjson.dumps(model)
        # Answers give profile milliseconds, as kairos serve's do on a time-scaled pool.
        scale = float(metadata["parameters"]["time_scale"])
        self._per_profile_ms = 1.0 / scale if scale > 0 else 1.0

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import Response

        path = request.url.path
        if request.method == "GET":
            if path in (f"/v2/models/{self._model}", "/v2/models/" + self._model + "/versions/1"):
                return Response(self._metadata, media_type="application/json")
            if path in ("/v2/health/ready", "/v2/health/live"):
                return Response(b'{"ready":true}', media_type="application/json")
            return _error(Response, 404, f"no endpoint {path!r}")
        if path not in self._infer_paths:
            return _error(Response, 404, f"no endpoint {path!r}")
        body = await request.body()
        try:
            batch, json_length, request_id = _read_head(body, request.headers.get(BINARY_HEADER))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return _error(Response, 400, f"bad inference request: {exc}")
        k = (
            0
            if len(self._handles) == 1
            else random.choices(range(len(self._handles)), self._weights)[0]
        )
        outputs, service_ms, instance_type = await self._handles[k].remote(batch, body, json_length)
        answer = b"".join(
            (
                b'{"model_name":',
                self._model_bytes,
                b',"model_version":"1","id":',
                orjson.dumps(request_id),
                b',"parameters":',
                orjson.dumps(
                    {
                        "service_ms": service_ms * self._per_profile_ms,
                        "instance_type": instance_type,
                    }
                ),
                b',"outputs":',
                outputs,
                b"}",
            )
        )
        return Response(answer, media_type="application/json")


def _read_head(body: bytes, json_length_text: str | None) -> tuple[int, int | None, str]:
    """(batch size, JSON part length, request id) from a KServe v2 body's JSON part."""
    json_length = int(json_length_text) if json_length_text else None
    doc = orjson.loads(body[:json_length] if json_length is not None else body)
    batch = int(doc["inputs"][0]["shape"][0])
    if batch < 1:
        raise ValueError(f"batch size {batch} is below 1")
    return batch, json_length, str(doc.get("id", ""))


def _error(response: Any, status: int, message: str) -> Any:
    return response(
        orjson.dumps({"error": message}), status_code=status, media_type="application/json"
    )


# --- building the application ----------------------------------------------------------------


def model_metadata(scenario: Scenario, pool: Pool, time_scale: float) -> dict[str, Any]:
    """What ``GET /v2/models/{model}`` answers: the same fields the load generator reads from
    ``kairos serve``."""
    inputs, outputs = stand_in_signature()
    return {
        "name": scenario.model,
        "versions": ["1"],
        "platform": "ray-serve",
        "inputs": specs_as_dicts(inputs),
        "outputs": specs_as_dicts(outputs),
        "parameters": {
            "pool": str(pool),
            "qos_ms": scenario.qos_ms,
            "time_scale": time_scale,
            "max_batch": scenario.profiles.max_batch,
            "capacity_hint_qps": rough_capacity_qps(scenario, pool),
        },
    }


def type_weights(scenario: Scenario, pool: Pool) -> dict[str, float]:
    """Each type deployment's share of the pool's capacity over the mix (fixed weights)."""
    return {t: rough_capacity_qps(scenario, Pool.of({t: n})) for t, n in pool.counts}


def build_app(
    scenario: Scenario,
    pool: Pool,
    layout: str,
    router: str,
    time_scale: float,
    router_options: Mapping[str, Any] | None = None,
) -> Any:
    """The Ray Serve application for ``pool`` (see the module docstring)."""
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    if layout not in LAYOUTS or router not in ROUTERS:
        raise ValueError(f"layout {layout!r} / router {router!r} not in {LAYOUTS} / {ROUTERS}")
    if router != "default" and layout != "pooled":
        raise ValueError("a custom router needs the pooled layout (it chooses among types)")
    # A replica being stopped (a redeploy, the shutdown) checks every wait loop whether its
    # queries are done; Ray Serve's 2 s loop only delays the next configuration's start.
    quick_stop = {"graceful_shutdown_wait_loop_s": GRACEFUL_WAIT_LOOP_S}
    replica: Any = serve.deployment(ReplayReplica, max_ongoing_requests=1, **quick_stop)
    if layout == "per-type":
        targets = {
            t: replica.options(
                name=f"replay-{t}",
                num_replicas=n,
                ray_actor_options={"num_cpus": 0, "resources": {t: 1}},
            ).bind(scenario.model, t, time_scale)
            for t, n in pool.counts
        }
        weights = type_weights(scenario, pool)
    else:
        options: dict[str, Any] = {}
        if router == "kairos-cost":
            router_config: dict[str, Any] = {
                "request_router_class": ROUTER_CLASS,
                "request_router_kwargs": {
                    "model": scenario.model,
                    "qos_ms": scenario.qos_ms,
                    "time_scale": time_scale,
                    **(router_options or {}),
                },
                # The router holds a query for a busy instance by declining to choose:
                # Ray Serve then retries after a back-off, which must be short against QoS.
                "initial_backoff_s": 0.001,
                "backoff_multiplier": 1.0,
                "max_backoff_s": 0.001,
            }
            options["request_router_config"] = RequestRouterConfig(**router_config)
        targets = {
            "pool": replica.options(
                name="replay-pool",
                num_replicas=pool.size,
                ray_actor_options={"num_cpus": 0, "resources": {SLOT: 1}},
                **options,
            ).bind(scenario.model, None, time_scale)
        }
        weights = {"pool": 1.0}
    ingress: Any = serve.deployment(
        Ingress,
        name="ingress",
        num_replicas=1,
        max_ongoing_requests=100_000,
        **quick_stop,
        ray_actor_options={"num_cpus": 0, "resources": {HEAD: 1}},
    )
    return ingress.bind(
        scenario.model, model_metadata(scenario, pool, time_scale), targets, weights
    )


# --- the local cluster -----------------------------------------------------------------------

# What the application's deployments ask of the nodes (see the module docstring); any cluster
# whose head and type nodes declare these can serve it (the Ray tests' shared cluster does).
HEAD_RESOURCES = {HEAD: 1}


def type_node_resources(instance_type: str, count: int) -> dict[str, float]:
    """The resources a node hosting ``count`` instances of ``instance_type`` declares."""
    return {instance_type: count, SLOT: count}


class LocalCluster:
    """A head node plus one Ray node per instance type of ``pool``, all on this machine."""

    def __init__(self, pool: Pool) -> None:
        from ray.cluster_utils import Cluster

        # A private Ray temp dir: several Ray clusters may share this machine.
        self.temp_dir = tempfile.mkdtemp(prefix="krs-", dir="/tmp")
        os.environ["RAY_TMPDIR"] = self.temp_dir
        ray_dir = os.path.join(self.temp_dir, "ray")
        os.makedirs(ray_dir)
        # Replicas import this module and the custom router by name.
        path = os.environ.get("PYTHONPATH", "")
        os.environ["PYTHONPATH"] = f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT)
        common: dict[str, Any] = {"node_ip_address": "127.0.0.1", "temp_dir": ray_dir}
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 1,
                "resources": HEAD_RESOURCES,
                "include_dashboard": False,
                **common,
            },
        )
        for t, n in pool.counts:
            self.cluster.add_node(
                num_cpus=0, resources=type_node_resources(t, n), labels={LABEL: t}, **common
            )
        import ray

        # The driver only deploys; replicas' log lines stay in the session's log files.
        ray.init(address=self.cluster.address, log_to_driver=False)

    def shutdown(self) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()
        with contextlib.suppress(Exception):
            self.cluster.shutdown()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def serve_pool(
    scenario: Scenario,
    pool: Pool,
    layout: str,
    router: str,
    time_scale: float,
    port: int,
    router_options: Mapping[str, Any] | None = None,
) -> str:
    """Start Ray Serve on the connected cluster; return its URL once the model answers."""
    from ray import serve
    from ray.serve.schema import LoggingConfig

    # Per-request access logs off: a high-rate service would not write a line per query.
    serve.start(
        http_options={"host": "127.0.0.1", "port": port},
        proxy_location="HeadOnly",
        logging_config=LoggingConfig(enable_access_log=False),
    )
    app = build_app(scenario, pool, layout, router, time_scale, router_options)
    serve.run(
        app,
        name="kairos-bench",
        route_prefix="/",
        blocking=False,
        logging_config=LoggingConfig(enable_access_log=False),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180.0
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/v2/models/{scenario.model}", timeout=5) as r,
        ):
            if r.status == 200 and _all_replicas_running(serve, pool.size):
                return url
        time.sleep(0.5)
    raise RuntimeError(f"Ray Serve did not answer at {url} within 180 s")


def _all_replicas_running(serve: Any, replicas: int) -> bool:
    """Every replica of the pool runs: until then a router (the proxy's) may know only some of
    them, and a busy host can leave the first query to a partial replica set."""
    app = serve.status().applications.get("kairos-bench")
    if app is None:
        return False
    running = sum(
        d.replica_states.get("RUNNING", 0)
        for name, d in app.deployments.items()
        if name != "ingress"
    )
    return bool(running >= replicas)


def probe(url: str, model: str, batches: Sequence[int]) -> list[dict[str, Any]]:
    """Send one query per batch size, one after the other; each answer's status and params."""
    out = []
    for b in batches:
        head = {"inputs": [{"name": "dense", "datatype": "FP32", "shape": [b, 13], "data": []}]}
        req = urllib.request.Request(
            f"{url}/v2/models/{model}/infer",
            data=orjson.dumps(head),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            doc = orjson.loads(resp.read())
            out.append(
                {
                    "batch": b,
                    "status": resp.status,
                    **doc["parameters"],
                    "rows": len(doc["outputs"][0]["data"]),
                }
            )
    return out


def probe_configurations(
    scenario: Scenario, pool: Pool, probes: str, time_scale: float, port: int
) -> dict[str, list[dict[str, Any]]]:
    """Serve each ``LAYOUT:ROUTER:B,B`` item of ``probes`` (';'-separated) in turn on the
    connected cluster and probe it (``probe``); the answers by ``LAYOUT:ROUTER``."""
    found = {}
    for item in probes.split(";"):
        layout, router, batches = item.split(":")
        url = serve_pool(scenario, pool, layout, router, time_scale, port)
        found[f"{layout}:{router}"] = probe(
            url, scenario.model, [int(b) for b in batches.split(",")]
        )
    return found


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="dien")
    parser.add_argument("--pool", required=True)
    parser.add_argument("--layout", choices=LAYOUTS, default="per-type")
    parser.add_argument("--router", choices=ROUTERS, default="default")
    parser.add_argument("--router-options", default="{}", help="JSON, for kairos-cost")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--probe",
        default="",
        metavar="LAYOUT:ROUTER:B,B;...",
        help="serve each configuration in turn, send one query per batch size B, print the "
        "answers as one JSON line and exit (a self-test)",
    )
    args = parser.parse_args(argv)
    if not in_private_netns():
        sys.exit("rayserve_app: run inside a private network namespace (see netns_command)")
    scenario, pool = Scenario.build(args.model), Pool.parse(args.pool)
    cluster = LocalCluster(pool)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.probe:
            found = probe_configurations(scenario, pool, args.probe, args.time_scale, args.port)
            print(f"{PROBE_LINE} {orjson.dumps(found).decode()}", flush=True)
            return
        url = serve_pool(
            scenario,
            pool,
            args.layout,
            args.router,
            args.time_scale,
            args.port,
            orjson.loads(args.router_options),
        )
        print(f"{READY_LINE} {url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        cluster.shutdown()  # serve.shutdown() first only adds a wait: the nodes go anyway


if __name__ == "__main__":
    main()
