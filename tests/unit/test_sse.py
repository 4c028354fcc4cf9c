"""http.sse internals that the end-to-end tests only hit by chance."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

from faceplate.http.sse import _until


async def test_a_stream_cancelled_as_its_source_ends_leaves_no_unretrieved_step() -> None:
    """The source's last read (StopAsyncIteration) finishes in the same loop turn as the client's
    hang-up cancels the stream: the finished step must still be collected, or the garbage collector
    logs "Task exception was never retrieved" (seen once in bench/soak.py's 10-minute run)."""
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def source() -> AsyncIterator[dict[str, Any]]:
        yield {"n": 1}
        await gate  # then the source ends

    async def never() -> Any:
        await asyncio.Event().wait()

    complaints: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: complaints.append(context["message"]))
    try:
        stream = _until(source(), never)
        assert await stream.__anext__() == {"n": 1}
        reading = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)  # it now waits on its step, which waits on the gate
        gate.set_result(None)  # the step ends (StopAsyncIteration) in the next turn...
        reading.cancel()  # ...the same turn the stream is cancelled
        await asyncio.gather(reading, return_exceptions=True)
        assert reading.cancelled()
        del stream, reading
        gc.collect()
        await asyncio.sleep(0)
        assert complaints == []
    finally:
        loop.set_exception_handler(None)
