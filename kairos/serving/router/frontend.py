"""The KServe v2 front end: HTTP routing, validation, auth, metadata, metrics and admin.

``Frontend`` turns a request into a ``Dispatcher.admit`` call (or an immediate answer: 4xx for
bad input, 503 when the queue is full or the router is draining); ``Answers`` turns a
dispatcher's outcome into the HTTP answer (the dispatcher's ``AnswerSink``, built before it);
``TrafficView`` is what GET /v2/traffic, the traffic gauges and the headroom watch read. Each
is given what it reads when it is built (the router builds them in order, see router.py).
Paths (Open Inference Protocol / KServe v2):

  GET  /v2, /v2/health/live, /v2/health/ready, /metrics
  GET  /v2/models/{m}[/versions/1], /v2/models/{m}[/versions/1]/ready
  POST /v2/models/{m}[/versions/1]/infer   (JSON or binary tensor data)
  GET  /v2/openapi.json  (this API as an OpenAPI 3 document)
  GET  /v2/traffic  (observed rate and batch mix, the pool's headroom; see runtime.md)
  GET  /v2/admin/pool, POST /v2/admin/pool {"pool": "TYPE=N,..."}  (resize; see runtime.md)

Every answer the router gives with status >= 400 is counted in ``kairos_query_errors`` (by
status) or ``kairos_queries_rejected`` (503, by reason); a handler that raises is a counted
500 with the exception logged, never an unanswered request.
"""

from __future__ import annotations

import asyncio
import hmac
import math
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from kairos import __version__
from kairos.catalog import Pool
from kairos.errors import KairosError
from kairos.protocol.api import (
    ADMIN_POOL_PATH,
    HEALTH_LIVE_PATH,
    HEALTH_READY_PATH,
    METRICS_PATH,
    OPENAPI_PATH,
    TRAFFIC_PATH,
)
from kairos.protocol.tensors import (
    BINARY_HEADER,
    BadRequest,
    TensorSpec,
    parse_json_length,
    specs_as_dicts,
)
from kairos.protocol.tensors import validate_request as validate
from kairos.scenario import Scenario
from kairos.serving.router.dispatcher import Dispatcher, Pending, Served
from kairos.serving.router.http import JSON, Deferred, HttpRequest, HttpResponse
from kairos.serving.router.metrics import CONTENT_TYPE, RouterMetrics
from kairos.serving.router.openapi import openapi_response
from kairos.serving.router.traffic import HeadroomWatch, Traffic, TrafficWindow
from kairos.serving.settings import HttpSettings
from kairos.sim.capacity import rough_capacity_qps


class PoolView(Protocol):
    """What the front end reads of the worker pool: its tensors (known once a worker
    described itself) and its instances."""

    @property
    def signature(self) -> tuple[TensorSpec, ...] | None: ...

    @property
    def out_signature(self) -> tuple[TensorSpec, ...] | None: ...

    @property
    def described(self) -> bool: ...

    def healthy_instances(self) -> list[int]: ...

    def describe(self) -> list[dict[str, Any]]: ...


class TrafficView:
    """Observed traffic, the running pool, and its headroom for that traffic: GET
    /v2/traffic, the traffic gauges, and what the headroom watch re-checks."""

    def __init__(
        self,
        scenario: Scenario,
        policy: str,
        window: TrafficWindow,
        now_s: Callable[[], float],
        running: Callable[[], Pool],
        headroom: HeadroomWatch | None,
    ) -> None:
        self.scenario = scenario
        self.policy = policy
        self._window = window
        self._now_s = now_s
        self._running = running
        self._headroom = headroom

    def observed(self) -> Traffic:
        """The traffic admitted over the last ``traffic_window_s`` (profile seconds)."""
        return self._window.snapshot(self._now_s())

    def as_dict(self) -> dict[str, Any]:
        traffic = self.observed()
        pool = self._running()
        head = None if self._headroom is None else self._headroom.update(traffic)
        return traffic.as_dict() | {
            "model": self.scenario.model,
            "qos_ms": self.scenario.qos_ms,
            "policy": self.policy,
            "pool": str(pool),
            "cost_per_hr": pool.cost_per_hr(self.scenario.prices),
            "bound_qps": None if head is None else head.bound_qps,
            "allowable_qps": None if head is None else head.allowable_qps,
            "utilisation": None if head is None else head.utilisation(traffic.rate_qps),
        }


class Answers:
    """The dispatcher's outcomes as HTTP answers (its ``AnswerSink``), counted in the metrics."""

    def __init__(self, scenario: Scenario, metrics: RouterMetrics) -> None:
        self.metrics = metrics
        self._qos_s = scenario.qos_ms / 1000.0
        self._model_bytes = orjson.dumps(scenario.model)

    def served(self, pending: Pending, served: Served) -> None:
        if served.code != 200:
            self.failed(pending, served.code, served.error)
            return
        latency_s = served.latency_s
        self.metrics.observe(
            served.instance_type, latency_s, served.queue_s, served.router_s, self._qos_s
        )
        params = {
            "instance": served.instance,
            "instance_type": served.instance_type,
            "queue_ms": served.queue_s * 1000.0,
            "service_ms": served.service_s * 1000.0,
            "latency_ms": latency_s * 1000.0,
            "qos_met": latency_s <= self._qos_s,
            "attempts": pending.attempts,
            "overhead_ms": served.router_s * 1000.0,  # wall ms, see docs/runtime.md
        }
        body = b"".join(
            (
                b'{"model_name":',
                self._model_bytes,
                b',"model_version":"1","id":',
                orjson.dumps(pending.request_id),
                b',"parameters":',
                orjson.dumps(params),
                b',"outputs":',
                served.outputs,
                b"}",
            )
        )
        pending.reply.resolve(HttpResponse(200, body))

    def failed(self, pending: Pending, status: int, message: str) -> None:
        if status == 503:
            self.metrics.rejected.labels("draining").inc()
        else:
            self.metrics.errors.labels(str(status)).inc()
        pending.reply.resolve(_error(status, message))


class Frontend:
    """Answers HTTP requests for one router (see the module docstring). It is given the
    pool's view (tensors, instances), the dispatcher (admit, resize and what it holds), the
    traffic view, the policy's name and the time scale it reports; it reaches through none
    of them."""

    def __init__(
        self,
        settings: HttpSettings,
        scenario: Scenario,
        *,
        policy: str,
        time_scale: float,
        pool: PoolView,
        dispatcher: Dispatcher,
        traffic: TrafficView,
        metrics: RouterMetrics,
        log: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.scenario = scenario
        self.policy = policy
        self.time_scale = time_scale
        self.pool = pool
        self.dispatcher = dispatcher
        self.traffic = traffic
        self.metrics = metrics
        self.log = log
        self.draining = False
        self._max_batch = scenario.profiles.max_batch
        self._expected_auth = f"Bearer {settings.api_token}".encode()
        self._routes: dict[str, Callable[[], HttpResponse]] = {
            "/v2": lambda: _json(
                200,
                {"name": "kairos", "version": __version__, "extensions": ["binary_tensor_data"]},
            ),
            HEALTH_LIVE_PATH: lambda: _json(200, {"live": True}),
            HEALTH_READY_PATH: lambda: _json(200 if self.ready else 503, {"ready": self.ready}),
            METRICS_PATH: lambda: HttpResponse(200, self.metrics.render(), CONTENT_TYPE.encode()),
            TRAFFIC_PATH: lambda: _json(200, self.traffic.as_dict()),
            OPENAPI_PATH: lambda: openapi_response(scenario.model, self.pool.signature),
        }

    @property
    def ready(self) -> bool:
        pool = self.pool
        return pool.described and not self.draining and bool(pool.healthy_instances())

    # --- routing ------------------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse | Deferred:
        """Route one request; inference answers later (a ``Deferred``)."""
        try:
            answer = self._route(request)
        except Exception as exc:  # a bug here must still answer, and be seen
            self.log(f"error handling {request.method} {request.path}: {exc!r:.300}")
            answer = _error(500, "internal error in the router; it was logged.")
        if isinstance(answer, HttpResponse) and answer.status >= 400 and answer.status != 503:
            self.metrics.errors.labels(str(answer.status)).inc()
        return answer

    def _route(self, request: HttpRequest) -> HttpResponse | Deferred:
        path = request.path
        if self.settings.api_token and not path.startswith("/v2/health/"):
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, self._expected_auth):
                return _error(
                    401,
                    "missing or wrong bearer token.",
                    (("WWW-Authenticate", 'Bearer realm="kairos"'),),
                )
        fixed = self._routes.get(path)
        if fixed is not None:
            return fixed() if request.method in ("GET", "HEAD") else _not_allowed("GET")
        if path == ADMIN_POOL_PATH:
            return self._admin_pool(request)
        rest = _model_endpoint(path, self.scenario.model)
        if isinstance(rest, HttpResponse):
            return rest
        if rest == "infer":
            return self._infer(request) if request.method == "POST" else _not_allowed("POST")
        if rest not in ("", "ready"):
            return _no_endpoint(path)
        if request.method not in ("GET", "HEAD"):
            return _not_allowed("GET")
        return self._model_ready() if rest else self._model_metadata()

    # --- model endpoints ----------------------------------------------------------------------

    def _model_ready(self) -> HttpResponse:
        ready = self.ready
        return _json(200 if ready else 503, {"name": self.scenario.model, "ready": ready})

    def _model_metadata(self) -> HttpResponse:
        pool = self.dispatcher.active_pool()
        params = {
            "pool": str(pool),
            "policy": self.policy,
            "qos_ms": self.scenario.qos_ms,
            "time_scale": self.time_scale,
            "max_batch": self._max_batch,
            "capacity_hint_qps": rough_capacity_qps(self.scenario, pool),
            "cost_per_hr": pool.cost_per_hr(self.scenario.prices),
            "workers": self.workers(),
        }
        return _json(
            200,
            {
                "name": self.scenario.model,
                "versions": ["1"],
                "platform": "kairos",
                "inputs": specs_as_dicts(self.pool.signature) or [],
                "outputs": specs_as_dicts(self.pool.out_signature) or [],
                "parameters": params,
            },
        )

    def workers(self) -> list[dict[str, Any]]:
        """The pool's instances, with the ones being drained for a resize marked so."""
        retired = self.dispatcher.retired()
        rows = self.pool.describe()
        for row in rows:
            if row["instance"] in retired and row["state"] != "removed":
                row["state"] = "draining"
        return rows

    def _infer(self, request: HttpRequest) -> HttpResponse | Deferred:
        settings = self.settings
        if self.draining:
            return self._reject("draining", "the router is shutting down.")
        if not self.pool.described:
            return self._reject("not_ready", "no worker has come up yet.")
        if self.dispatcher.queued() >= settings.max_queue:
            return self._reject(
                "queue_full", f"the queue is full ({settings.max_queue} queries); retry later."
            )
        if request.too_large:
            return _error(
                400,
                f"request body of {request.body_size} bytes exceeds the "
                f"{settings.max_body_bytes}-byte limit; split the query or "
                "raise --max-body-bytes.",
            )
        body = request.body
        try:
            json_length = parse_json_length(request.headers.get(BINARY_HEADER), len(body))
            parsed = validate(body, self.pool.signature, self._max_batch, json_length)
        except BadRequest as exc:
            return _error(400, str(exc))
        answer = Deferred()
        self.dispatcher.admit(
            body, parsed.batch_size, parsed.request_id, answer, request.received_t, json_length
        )
        return answer

    def _reject(self, reason: str, message: str) -> HttpResponse:
        self.metrics.rejected.labels(reason).inc()
        n_up = max(1, len(self.pool.healthy_instances()))
        wait_s = self.dispatcher.queue_wait_s(int(self.scenario.mix.mean), n_up)
        return _error(503, message, (("Retry-After", str(max(1, math.ceil(wait_s)))),))

    # --- admin --------------------------------------------------------------------------------

    def _admin_pool(self, request: HttpRequest) -> HttpResponse | Deferred:
        if request.method in ("GET", "HEAD"):
            return _json(
                200, {"pool": str(self.dispatcher.active_pool()), "workers": self.workers()}
            )
        if request.method != "POST":
            return _not_allowed("GET, POST")
        try:
            doc = orjson.loads(request.body)
            pool = Pool.parse(doc["pool"]) if isinstance(doc, dict) else None
        except (orjson.JSONDecodeError, KeyError, TypeError, KairosError) as exc:
            return _error(400, f'body must be {{"pool": "TYPE=N,..."}} ({exc}).')
        if pool is None:
            return _error(400, 'body must be a JSON object {"pool": "TYPE=N,..."}.')
        answer = Deferred()
        asyncio.ensure_future(self._resize(pool, answer))
        return answer

    async def _resize(self, pool: Pool, answer: Deferred) -> None:
        try:
            # Metrics, metadata and the traffic view price the pool: refuse an unpriced type.
            self.scenario.check_pool(pool)
            changed = await self.dispatcher.resize(pool)
        except KairosError as exc:
            answer.resolve(_error(400, str(exc)))
            return
        except Exception as exc:
            self.log(f"resize to {pool} failed: {exc!r:.300}")
            answer.resolve(_error(500, f"resize failed: {exc}"))
            return
        answer.resolve(_json(200, {"pool": str(self.dispatcher.active_pool()), **changed}))


def _model_endpoint(path: str, served: str) -> str | HttpResponse:
    """What follows ``/v2/models/{m}[/versions/1]/`` in ``path`` when it names the served
    model, else the 404 that says why."""
    if not path.startswith("/v2/models/"):
        return _no_endpoint(path)
    model, _, rest = path[len("/v2/models/") :].partition("/")
    if rest.startswith("versions/"):
        version, _, rest = rest[len("versions/") :].partition("/")
        if version != "1":
            return _error(404, f"model version {version!r} does not exist (only '1').")
    if model != served:
        return _error(404, f"model {model!r} is not served here (this router serves {served!r}).")
    return rest


def _json(status: int, doc: Any, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse(status, orjson.dumps(doc), JSON, headers)


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def _error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse(status, error_body(message), JSON, headers)


def _no_endpoint(path: str) -> HttpResponse:
    return _error(404, f"no endpoint {path!r}; see GET /v2 and the KServe v2 paths.")


def _not_allowed(allow: str) -> HttpResponse:
    return _error(405, f"method not allowed here; use {allow}.", (("Allow", allow),))
