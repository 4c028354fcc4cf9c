"""Prometheus metrics of one server, in its own registry (no process-wide globals).

Names follow vLLM's (``vllm:time_to_first_token_seconds`` ...) with the ``faceplate:`` prefix, so
dashboards built for vLLM or llama-server need only the prefix changed:

- ``faceplate:http_requests_total{method,route,status}`` and
  ``faceplate:http_request_duration_seconds{method,route}``: every HTTP request but ``/metrics``,
  by route template (``/v1/files/{file_id}``), never by raw path;
- ``faceplate:requests_total{endpoint,model,status}``: API calls on a model as usage records them
  (``batch /v1/...`` for Batch API lines), 429s and 499s (the client left) included;
- ``faceplate:prompt_tokens_total{model}``, ``faceplate:generation_tokens_total{model}``;
- ``faceplate:time_to_first_token_seconds{model}``, ``faceplate:inter_token_latency_seconds{model}``,
  ``faceplate:e2e_request_latency_seconds{model}`` (histograms; e2e from admission to the end);
- ``faceplate:rate_limited_requests_total{type}``: 429s of the per-key limits (requests or tokens);
- read from the engines at each scrape: ``faceplate:num_requests_running{model}`` (sequences),
  ``faceplate:num_requests_waiting{model}``, ``faceplate:num_batch_requests_running{model}``,
  ``faceplate:prefix_cache_hit_tokens_total{model}``, ``faceplate:prompt_tokens_processed_total{model}``,
  ``faceplate:host_prompt_cache_bytes{model}``, ``faceplate:host_prompt_cache_hits_total{model}``,
  ``faceplate:engine_steps_total{model}``, ``faceplate:engine_step_seconds_total{model}``
  (mean step time = the rate of the second over the first);
- per member of a remote pool, labelled ``{model,upstream}`` (the member's URL):
  ``faceplate:upstream_healthy``, ``faceplate:upstream_circuit_open`` (1 open, 0.5 half-open),
  ``faceplate:upstream_requests_running``, ``faceplate:upstream_requests_total``,
  ``faceplate:upstream_failures_total``, ``faceplate:upstream_retries_total``,
  ``faceplate:upstream_circuit_opens_total``.

One process serves one registry; run one Faceplate process per machine (it batches internally),
so prometheus_client's multiprocess mode is not needed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
ITL_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)

# engine stats key -> (metric, kind, help)
_ENGINE = {
    "running_sequences": ("faceplate:num_requests_running", "gauge", "Sequences generating now."),
    "queued_requests": ("faceplate:num_requests_waiting", "gauge", "Requests queued for a slot."),
    "batch_sequences": ("faceplate:num_batch_requests_running", "gauge", "Sequences of Batch API lines generating now."),
    "prompt_tokens_reused": ("faceplate:prefix_cache_hit_tokens", "counter", "Prompt tokens served from the prefix cache."),
    "prompt_tokens": ("faceplate:prompt_tokens_processed", "counter", "Prompt tokens the engine was given."),
    "prompt_cache_bytes": ("faceplate:host_prompt_cache_bytes", "gauge", "Host memory held by the prompt cache."),
    "prompt_cache_hits": ("faceplate:host_prompt_cache_hits", "counter", "Prompts loaded from the host prompt cache."),
    "steps": ("faceplate:engine_steps", "counter", "Engine steps (forward passes) run."),
    "step_seconds": ("faceplate:engine_step_seconds", "counter", "Seconds spent in engine steps."),
    "active_requests": ("faceplate:num_requests_running", "gauge", "Requests being embedded now."),
    "queued_inputs": ("faceplate:num_inputs_waiting", "gauge", "Embedding inputs queued for a batch."),
}

# a pool member's stats key -> (metric, kind, help)
_UPSTREAM = {
    "healthy": ("faceplate:upstream_healthy", "gauge", "1 while the member's health check passes."),
    "circuit": ("faceplate:upstream_circuit_open", "gauge", "1 while the member's circuit is open, 0.5 half-open."),
    "inflight": ("faceplate:upstream_requests_running", "gauge", "Requests in flight to the member."),
    "requests": ("faceplate:upstream_requests", "counter", "Requests sent to the member."),
    "failures": ("faceplate:upstream_failures", "counter", "Requests the member failed (refused, timed out, 5xx, cut)."),
    "retries": ("faceplate:upstream_retries", "counter", "Requests placed elsewhere after the member failed them."),
    "opens": ("faceplate:upstream_circuit_opens", "counter", "Times the member's circuit opened."),
}
_CIRCUIT = {"closed": 0.0, "half_open": 0.5, "open": 1.0}


def _families(table: dict[str, tuple[str, str, str]], labels: list[str]) -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
    return {
        key: (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(name, doc, labels=labels)
        for key, (name, kind, doc) in table.items()
    }


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return _CIRCUIT.get(value) if isinstance(value, str) else None


class _Engines(Collector):
    """The engines' own counters, read at scrape time."""

    def __init__(self, stats: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        members = _families(_UPSTREAM, ["model", "upstream"])
        for model, stats in self._stats().items():
            for key, (name, kind, doc) in _ENGINE.items():
                value = stats.get(key)
                if not isinstance(value, int | float) or isinstance(value, bool):
                    continue
                family = families.get(name)
                if family is None:
                    cls = GaugeMetricFamily if kind == "gauge" else CounterMetricFamily
                    family = families[name] = cls(name, doc, labels=["model"])
                family.add_metric([model], float(value))
            for member in stats.get("upstreams") or []:
                for key, family in members.items():
                    value = _number(member.get(key))
                    if value is not None:
                        family.add_metric([model, member["url"]], value)
        yield from families.values()
        yield from (f for f in members.values() if f.samples)


class Metrics:
    def __init__(self, engine_stats: Callable[[], dict[str, dict[str, Any]]] | None = None) -> None:
        r = self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "faceplate:http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "faceplate:http_request_duration_seconds",
            "Time to answer an HTTP request, to its last byte.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter("faceplate:requests", "API calls on a model.", ["endpoint", "model", "status"], registry=r)
        self.prompt_tokens = Counter("faceplate:prompt_tokens", "Prompt tokens of finished calls.", ["model"], registry=r)
        self.generation_tokens = Counter(
            "faceplate:generation_tokens", "Tokens generated by finished calls.", ["model"], registry=r
        )
        self.ttft = Histogram(
            "faceplate:time_to_first_token_seconds",
            "From admission to the first generated token.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "faceplate:inter_token_latency_seconds", "Time between generated tokens.", ["model"], buckets=ITL_BUCKETS, registry=r
        )
        self.e2e = Histogram(
            "faceplate:e2e_request_latency_seconds",
            "From admission to the end of a call.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter(
            "faceplate:rate_limited_requests", "Calls refused by a per-key limit (429).", ["type"], registry=r
        )
        if engine_stats is not None:
            r.register(_Engines(engine_stats))

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
