"""The API's Prometheus metrics (`GET /metrics`) and the middleware that counts and times requests."""

from __future__ import annotations

import time

from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as Metric

from serving.limits import MAX_BODY_BYTES


class ServingMetrics:
    """Prometheus metrics in a registry of the app's own (several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Metric("homefeed_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram(
            "homefeed_request_seconds",
            "HTTP request latency",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.stage = Histogram(
            "homefeed_stage_seconds",
            "Time per pipeline stage",
            ["pipeline", "stage"],
            registry=self.registry,
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
        )
        self.filtered = Metric(
            "homefeed_filtered_candidates",
            "Candidates removed per filter",
            ["pipeline", "filter"],
            registry=self.registry,
        )
        self.timelines = Metric("homefeed_timelines", "Timelines served", ["pipeline"], registry=self.registry)
        self.fallbacks = Metric(
            "homefeed_fallbacks", "For You timelines served by the fallback", ["reason"], registry=self.registry
        )
        self.source_failures = Metric(
            "homefeed_source_failures", "Sources that failed open", ["pipeline", "source"], registry=self.registry
        )
        self.events = Metric("homefeed_events", "Client events accepted", ["type"], registry=self.registry)
        self.page_cache = Metric(
            "homefeed_page_cache",
            "Home timeline pages served again from the recent pages (hit) or computed (miss)",
            ["pipeline", "result"],
            registry=self.registry,
        )
        self._children: dict[tuple[int, tuple[str, ...]], object] = {}

    def inc(self, counter: Metric, *labels: str, amount: float = 1) -> None:
        self._child(counter, labels).inc(amount)

    def timed(self, pipeline: str, stage: str) -> _Timed:
        """A context that observes its duration as the stage's."""
        return _Timed(self._child(self.stage, (pipeline, stage)))

    def request_served(self, endpoint: str, status: int, seconds: float) -> None:
        self._child(self.latency, (endpoint,)).observe(seconds)
        self._child(self.requests, (endpoint, str(status))).inc()

    def timeline_served(self, pipeline: str, filtered: dict[str, int], fallback_reason: str | None = None) -> None:
        """A timeline page served (computed or again), with what each filter removed on it."""
        if fallback_reason not in (None, "continued"):
            self.inc(self.fallbacks, fallback_reason)
        self.inc(self.timelines, pipeline)
        for name, removed in filtered.items():
            if removed:
                self.inc(self.filtered, pipeline, name, amount=removed)

    def _child(self, metric: Metric | Histogram, labels: tuple[str, ...]):
        """`metric.labels(*labels)`, looked up once per metric and label values (a request counts
        and times a dozen things: each the least it can cost)."""
        child = self._children.get((id(metric), labels))
        if child is None:
            child = self._children[id(metric), labels] = metric.labels(*labels)
        return child


class _Timed:
    __slots__ = ("histogram", "start")

    def __init__(self, histogram: Histogram):
        self.histogram = histogram

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc_info) -> None:
        self.histogram.observe(time.perf_counter() - self.start)


class MeasuredRequests:
    """Pure ASGI middleware (Starlette's BaseHTTPMiddleware costs a task per request): counts and
    times each request by route in the app's metrics (`ServingState.metrics`), and refuses a
    declared body over MAX_BODY_BYTES with 413."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        declared = dict(scope["headers"]).get(b"content-length")
        try:
            if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
                response = JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
                await response(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            scope["app"].state.serving.metrics.request_served(
                getattr(scope.get("route"), "path", "unmatched"), status, time.perf_counter() - start
            )
