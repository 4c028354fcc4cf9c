"""Request headers past the limits are a 431 envelope; at the limits, the request goes through."""

from __future__ import annotations

import httpx

from tests import spec


async def test_header_count_and_size_limits(api: httpx.AsyncClient) -> None:
    at_limit = {f"x-h{i}": "v" for i in range(90)}  # plus the client's own few: under 100
    assert (await api.get("/v1/models", headers=at_limit)).status_code == 200
    many = await api.get("/v1/models", headers={f"x-h{i}": "v" for i in range(101)})
    assert many.status_code == 431
    spec.validate_error(many.json())
    assert many.json()["error"]["code"] == "request_header_fields_too_large" and "headers" in many.json()["error"]["message"]
    big = await api.get("/v1/models", headers={"x-big": "a" * 40_000})
    assert big.status_code == 431 and "bytes of headers" in big.json()["error"]["message"]
    assert big.headers["x-request-id"]
