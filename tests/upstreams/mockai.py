"""mockai: a deterministic OpenAI-compatible upstream for gateway tests (aiohttp).

    python -m tests.upstreams.mockai --port P [--host 127.0.0.1] [--flavour F] [--model NAME]
                                     [--max-inflight K] [--prefill-ms-per-kchar X]

prints ``mockai listening on http://HOST:PORT`` once it accepts connections. In-process:
``mock = await start_mockai(flavour="vllm")`` → ``mock.url`` (``http://127.0.0.1:PORT``),
``mock.base_url`` (``.../v1``), ``mock.stats``, ``mock.config(status=503)``, ``mock.reset()``,
``await mock.close()``.

Routes: ``GET /health``, ``GET /v1/models[/{id}]``, ``POST /v1/chat/completions``,
``POST /v1/completions``, ``POST /v1/embeddings``, the flavour's own (mock_flavours), and
``GET /mock/stats``, ``GET|POST /mock/config``, ``POST /mock/reset``.

Faults, per request through headers or per instance through ``POST /mock/config`` (JSON with the
names on the right, null to clear one; ``"count": N`` makes the config last N generation
requests; a header wins over the config):

    x-mock-chunks: N          chunks        natural length in tokens (max_tokens still cuts it)
    x-mock-interval-ms: T     interval_ms   delay between token chunks (non-stream: T per token)
    x-mock-ttfb-ms: T         ttfb_ms       delay before the response headers
    x-mock-die-after: K       die_after     abort the TCP connection after K token chunks
                                            (0: before any byte; non-stream K>0: half the body)
    x-mock-stall-after: K     stall_after   hang forever after K token chunks (0: before headers)
    x-mock-status: CODE       status        answer CODE with the flavour's error body
    x-mock-retry-after: S     retry_after   ... and a Retry-After: S header
    x-mock-error-after: K     error_after   after K token chunks send the flavour's in-band SSE
                                            error event and end without [DONE]; non-stream: a 500
    x-mock-ignore-stream: 1   ignore_stream answer one JSON body even when asked to stream (servers that do)
    (config only)             health_status the status GET /health answers (default 200)

A K at or past the number of tokens generated never fires. Stats count requests per path, in
flight, running, waiting, completed, aborted (the client went away first), died (die_after
fired), the maxima, and the last request body and headers. ``/mock/reset`` clears config, stats
and the prefix cache.

Prefill model (``--prefill-ms-per-kchar X``): before the first token, sleep X ms per 1000 chars of
the rendered prompt not covered by the longest prefix of a prompt seen before (LRU of 256);
``usage.prompt_tokens_details.cached_tokens`` = covered chars // 4, whatever X is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web

from tests.upstreams import mock_flavours as fl
from tests.upstreams import mock_stream as ms
from tests.upstreams.mock_state import CONTROLS, BadRequest, MockState, MockStats, embeddings_body, make_plan

STATE = web.AppKey("mockai_state", MockState)
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

__all__ = ["CONTROLS", "MockAI", "MockState", "MockStats", "build_app", "main", "start_mockai"]


class _Cut:
    """Set when the mock itself cut the connection, so the cancellation that follows is no abort."""

    died = False


def _encode(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _forever() -> None:
    await asyncio.Event().wait()


def _die(request: web.Request, state: MockState, cut: _Cut) -> None:
    cut.died = True
    state.stats.died += 1
    if request.transport is not None:
        request.transport.abort()


# ---------------------------------------------------------------- generation endpoints


async def _generation(request: web.Request, kind: str) -> web.StreamResponse:
    state = request.app[STATE]
    s = state.stats
    s.last_headers = dict(request.headers)
    try:
        body: Any = await request.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        s.last_body = body
        s.bodies.append(body)
    ctl = state.controls(request)
    cut = _Cut()
    s.in_flight += 1
    s.max_in_flight = max(s.max_in_flight, s.in_flight)
    try:
        return await _answer(request, state, kind, body, ctl, cut)
    except asyncio.CancelledError:
        if not cut.died:
            s.aborted += 1
        raise
    except ConnectionResetError:  # a write after the client went away
        if not cut.died:
            s.aborted += 1
        return web.Response(status=499)  # never reaches anyone; aiohttp drops it quietly
    finally:
        s.in_flight -= 1


async def _answer(
    request: web.Request, state: MockState, kind: str, body: Any, ctl: dict[str, float], cut: _Cut
) -> web.StreamResponse:
    flavour = state.flavour
    if ctl.get("ttfb_ms"):
        await asyncio.sleep(ctl["ttfb_ms"] / 1000)
    if ctl.get("status"):
        return fl.error_response(flavour, int(ctl["status"]), "mockai: injected failure", ctl.get("retry_after"))
    if ctl.get("die_after") == 0:
        _die(request, state, cut)
        return web.Response(status=499)
    if ctl.get("stall_after") == 0:
        await _forever()
    if not isinstance(body, dict):
        return fl.error_response(flavour, flavour.validation_status, "request body: expected a JSON object")
    if kind == "embeddings" and not flavour.embeddings:
        return web.Response(status=404)
    try:
        if kind == "embeddings":
            result: Any = embeddings_body(state, body)
            plan, rendered = None, "\n".join(str(x) for x in result["data"])
        else:
            plan, rendered = make_plan(state, kind, body, ctl)
    except BadRequest as exc:
        return fl.error_response(flavour, exc.status or flavour.validation_status, str(exc))
    async with state.slot():
        if plan is None:
            state.stats.completed += 1
            return web.json_response(result)
        stream = bool(body.get("stream")) and not ctl.get("ignore_stream")
        resp: web.StreamResponse | None = None
        if stream:
            resp = web.StreamResponse(headers=SSE_HEADERS)
            await resp.prepare(request)
        uncached = max(0, len(rendered) - plan.cached_tokens * 4)
        if state.prefill_ms_per_kchar and uncached:
            await asyncio.sleep(state.prefill_ms_per_kchar * uncached / 1_000_000)
        if resp is not None:
            await _stream(request, resp, state, plan, ctl, cut)
            return resp
        return await _whole(request, state, plan, ctl, cut)


async def _stream(
    request: web.Request, resp: web.StreamResponse, state: MockState, plan: ms.Plan, ctl: dict[str, float], cut: _Cut
) -> None:
    interval = ctl.get("interval_ms", 0) / 1000
    die, stall, err = ctl.get("die_after"), ctl.get("stall_after"), ctl.get("error_after")
    if err == 0:
        await resp.write(_encode(fl.stream_error_event(state.flavour, "mockai: injected stream error")))
        return
    sent = 0
    for event in ms.stream_events(plan, state.flavour):
        if event.content and sent and interval:
            await asyncio.sleep(interval)
        await resp.write(_encode(event.data))
        if not event.content:
            continue
        sent += 1
        if sent == die:
            _die(request, state, cut)
            return
        if sent == stall:
            await _forever()
        if sent == err:
            await resp.write(_encode(fl.stream_error_event(state.flavour, "mockai: injected stream error")))
            return
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    state.stats.completed += 1


async def _whole(request: web.Request, state: MockState, plan: ms.Plan, ctl: dict[str, float], cut: _Cut) -> web.StreamResponse:
    if ctl.get("interval_ms"):
        await asyncio.sleep(ctl["interval_ms"] * len(plan.tokens) / 1000)
    tokens = len(plan.tokens)
    if 0 < ctl.get("stall_after", -1) < tokens:
        await _forever()
    if 0 < ctl.get("error_after", -1) < tokens:
        return fl.error_response(state.flavour, 500, "mockai: injected failure")
    data = json.dumps(ms.response_body(plan, state.flavour)).encode()
    if 0 < ctl.get("die_after", -1) < tokens:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(data)
        await resp.prepare(request)
        await resp.write(data[: len(data) // 2])
        _die(request, state, cut)
        return resp
    state.stats.completed += 1
    return web.Response(body=data, content_type="application/json")


# ---------------------------------------------------------------- other routes


async def _health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    status = int(state.config.get("health_status", 200))
    if status != 200:
        return fl.error_response(state.flavour, status, "Loading model")
    return web.json_response({"status": "ok"})


def _model_obj(state: MockState, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": state.flavour.name}


async def _models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"object": "list", "data": [_model_obj(state, state.model)]})


async def _model(request: web.Request) -> web.Response:
    state = request.app[STATE]
    name = request.match_info["model"]
    if name != state.model:
        return fl.error_response(state.flavour, 404, f"The model `{name}` does not exist")
    return web.json_response(_model_obj(state, name))


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats.snapshot())


async def _config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.method == "POST":
        try:
            state.set_config(await request.json())
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"config": state.config, "count": state.config_left})


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"ok": True})


@web.middleware
async def _count(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    if not request.path.startswith("/mock/"):
        request.app[STATE].stats.requests[request.path] += 1
    return await handler(request)


def build_app(state: MockState) -> web.Application:
    app = web.Application(middlewares=[_count])
    app[STATE] = state
    app.router.add_get("/health", _health)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/models/{model}", _model)
    app.router.add_post("/v1/chat/completions", partial(_generation, kind="chat"))
    app.router.add_post("/v1/completions", partial(_generation, kind="completion"))
    app.router.add_post("/v1/embeddings", partial(_generation, kind="embeddings"))
    app.router.add_get("/mock/stats", _stats)
    app.router.add_route("*", "/mock/config", _config)
    app.router.add_post("/mock/reset", _reset)
    fl.add_flavour_routes(app, state)
    return app


# ---------------------------------------------------------------- running it


class MockAI:
    """A running in-process mockai."""

    def __init__(self, state: MockState, runner: web.AppRunner, host: str, port: int) -> None:
        self.state, self.runner, self.host, self.port = state, runner, host, port
        self.url = f"http://{host}:{port}"
        self.base_url = self.url + "/v1"

    @property
    def stats(self) -> MockStats:
        return self.state.stats

    def config(self, count: int | None = None, **controls: Any) -> None:
        """Instance-wide fault controls, as ``POST /mock/config``."""
        self.state.set_config({**controls, **({"count": count} if count is not None else {})})

    def reset(self) -> None:
        self.state.reset()

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_mockai(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    flavour: str = "openai",
    model: str = "mock-model",
    max_inflight: int | None = None,
    prefill_ms_per_kchar: float = 0.0,
    shutdown_timeout: float = 0.5,
) -> MockAI:
    """Start mockai on ``host:port`` (0: a free port) in the running event loop."""
    state = MockState(flavour, model, max_inflight, prefill_ms_per_kchar)
    runner = web.AppRunner(build_app(state), access_log=None, handler_cancellation=True, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return MockAI(state, runner, host, int(bound))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.upstreams.mockai", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--flavour", default="openai", choices=fl.FLAVOURS)
    p.add_argument("--model", default="mock-model")
    p.add_argument("--max-inflight", type=int, default=None)
    p.add_argument("--prefill-ms-per-kchar", type=float, default=0.0)
    args = p.parse_args(argv)

    async def serve() -> None:
        mock = await start_mockai(
            host=args.host,
            port=args.port,
            flavour=args.flavour,
            model=args.model,
            max_inflight=args.max_inflight,
            prefill_ms_per_kchar=args.prefill_ms_per_kchar,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"mockai listening on {mock.url}", flush=True)
        await stop.wait()
        await mock.close()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
