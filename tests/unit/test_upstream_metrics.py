"""Pool members in /metrics: one series per member, labelled by model and upstream URL."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from faceplate.service.metrics import Metrics


def _samples(stats: dict) -> dict[tuple[str, str], float]:
    text = Metrics(lambda: stats).render()[0].decode()
    return {
        (s.name, s.labels.get("upstream", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("faceplate:upstream")
    }


def test_each_member_is_a_series() -> None:
    member = {"healthy": True, "inflight": 2, "requests": 5, "failures": 1, "retries": 3, "opens": 1}
    stats = {
        "pool": {
            "kind": "chat",
            "upstreams": [
                {"url": "http://a:1", "circuit": "half_open", **member},
                {"url": "http://b:1", "circuit": "open", **member, "healthy": False},
            ],
        },
        "local": {"kind": "chat", "running_sequences": 1},
    }
    got = _samples(stats)
    assert got[("faceplate:upstream_circuit_open", "http://a:1")] == 0.5
    assert got[("faceplate:upstream_circuit_open", "http://b:1")] == 1.0
    assert got[("faceplate:upstream_healthy", "http://b:1")] == 0.0
    assert got[("faceplate:upstream_requests_running", "http://a:1")] == 2
    assert got[("faceplate:upstream_retries_total", "http://a:1")] == 3
    assert got[("faceplate:upstream_circuit_opens_total", "http://b:1")] == 1


def test_no_pool_no_upstream_series() -> None:
    assert _samples({"local": {"kind": "chat", "running_sequences": 1}}) == {}
