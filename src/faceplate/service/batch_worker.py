"""The batch worker: runs the Batch API's batches in the background, durably (see ``store.batches``).

One ``BatchWorker`` per process, started and stopped with the app. Each pass of its loop:

- takes one batch that needs stage work (``claim_stage``): a ``validating`` batch has its input
  file read from the blob store and validated as it streams (``validate_input``), then ``start``
  or ``fail``; a batch whose lines are all done, that expired, or that is being cancelled is
  wrapped up: ``mark_finalizing`` where it applies, its results streamed into an output file
  (successes) and an error file (failures, and unrun lines as ``batch_cancelled`` /
  ``batch_expired``), both ``batch_output`` files of the batch's owner (null when empty), and
  ``finish`` with the status and the unrun count;
- takes request lines (``claim_requests``) up to ``batch_concurrency`` running at once (and at
  most ``batch_owner_concurrency`` of one owner's across every replica) and runs each as its
  owner, through the same service functions as the HTTP API, in the engines' batch queue (which
  yields to interactive requests), with usage metered under ``batch <endpoint>`` and without the
  key's interactive rpm/tpm; a line whose engine is full or shutting down goes back to pending
  (``release``) and runs later; a line whose key was revoked or expired meanwhile gets that 401;
- renews its lines' leases, and cancels local lines whose batch stopped (``renew``).

Validation streams the input file twice: once to check it (``validate_input(keep=False)``), once
into the store (``read_lines``), so no input is ever held in memory whole. ``start`` refuses a batch
whose estimated prompt tokens would take its key's enqueued tokens past the key's batch token limit
(``batch_token_limit``, or the server's setting): the batch fails with ``token_limit_exceeded``,
as OpenAI's does.

A worker that dies leaves leases that run out; another worker (or this one, restarted) takes the
work over, and ``complete`` makes sure each line is counted once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from typing import Any

from faceplate.errors import FaceplateError, InvalidApiKey, Overloaded, ServiceUnavailable
from faceplate.service.batch_input import read_lines, validate_input
from faceplate.service.batch_output import failure_line, success_line
from faceplate.service.batch_requests import batch_services, run_request, usage_of
from faceplate.service.batch_results import wrap_up
from faceplate.service.batches import principal_from
from faceplate.service.services import Services
from faceplate.store.batches import (
    CANCELLING,
    FINALIZING,
    IN_PROGRESS,
    VALIDATING,
    BatchRow,
    ClaimedRequest,
    TokenLimitExceeded,
)

log = logging.getLogger("faceplate.batches")

BUSY_POLL_S = 0.2
IDLE_POLL_S = 1.0
BACKOFF_S = 1.0  # after an engine said it is full: claim nothing new for this long
KEY_CHECK_S = 5.0  # how long a key's status is trusted before it is read again


class BatchWorker:
    def __init__(self, services: Services, *, runner: str | None = None) -> None:
        self.services = services
        self.batch_services = batch_services(services)
        self.runner = runner or f"runner_{uuid.uuid4().hex}"
        self._lines: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._main: asyncio.Task[None] | None = None
        self._renewed = 0.0
        self._backoff_until = 0.0
        self._line_done = asyncio.Event()
        self._keys: dict[str, tuple[float, FaceplateError | None]] = {}  # key id -> (read at, refusal)

    @property
    def enabled(self) -> bool:
        return self.services.store is not None and self.services.blobs is not None

    @property
    def _lease_s(self) -> float:
        return self.services.settings.batch_lease_s

    def start(self) -> None:
        if self.enabled and self._main is None:
            self._main = asyncio.get_running_loop().create_task(self._loop(), name="batch worker")

    async def stop(self) -> None:
        """Cancel everything this worker runs and give its lines back (pending), so another runner
        (or this server, restarted) takes them at once; a stage lease simply runs out."""
        held = list(self._lines)
        tasks = [t for t in (self._main, *self._lines.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._main = None
        self._lines.clear()
        store = self.services.store
        if store is not None and held:
            now = time.time()
            for batch_id, line in held:
                with contextlib.suppress(Exception):  # not given back: its lease runs out instead
                    await asyncio.to_thread(store.batches.release, self.runner, batch_id, line, now)

    async def _loop(self) -> None:
        while True:
            try:
                busy = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("batch worker pass failed; retrying")
                busy = False
            # A line that finishes wakes the loop at once: its slot is refilled without waiting for
            # the next poll, so a fast model is not held to batch_concurrency lines per poll.
            # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a cancel that lands as
            # the event is set, and this loop would then outlive stop().
            waiter = asyncio.ensure_future(self._line_done.wait())
            try:
                await asyncio.wait({waiter}, timeout=BUSY_POLL_S if busy or self._lines else IDLE_POLL_S)
            finally:
                waiter.cancel()
            self._line_done.clear()

    async def step(self) -> bool:
        """One pass: stage work, new lines, lease renewal. True when there was work."""
        store = self.services.store
        assert store is not None
        if self.services.drain.draining:  # no new work; what runs finishes or is given back at stop
            await self._renew()
            return False
        busy = False
        row = await asyncio.to_thread(store.batches.claim_stage, self.runner, time.time(), self._lease_s)
        if row is not None:
            busy = True
            keeper = asyncio.get_running_loop().create_task(self._keep_stage(row.id), name=f"batch stage lease {row.id}")
            try:
                await self._stage(row)
            except Exception:
                log.exception("batch %s: stage work failed; another pass will retry it", row.id)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(store.batches.release_stage, row.id, self.runner)
            finally:
                keeper.cancel()
                with contextlib.suppress(BaseException):
                    await keeper
        await self._renew()
        settings = self.services.settings
        free = settings.batch_concurrency - len(self._lines)
        if free > 0 and time.monotonic() >= self._backoff_until:
            claimed = await asyncio.to_thread(
                store.batches.claim_requests,
                self.runner,
                time.time(),
                self._lease_s,
                free,
                owner_cap=settings.batch_owner_concurrency,
            )
            for c in claimed:
                key = (c.batch_id, c.line)
                if key in self._lines:
                    continue  # ours and still running (its lease ran out before a renewal): the claim renewed it
                task = asyncio.get_running_loop().create_task(self._run_line(c), name=f"batch line {key}")
                self._lines[key] = task
                task.add_done_callback(lambda _t, key=key: self._line_finished(key))
            busy = busy or bool(claimed)
        return busy

    def _line_finished(self, key: tuple[str, int]) -> None:
        self._lines.pop(key, None)
        self._line_done.set()

    async def _keep_stage(self, batch_id: str) -> None:
        """Renew the stage lease while a long validation or wrap-up runs (every third of the lease)."""
        store = self.services.store
        assert store is not None
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                held = await asyncio.to_thread(store.batches.renew_stage, batch_id, self.runner, time.time() + self._lease_s)
            except Exception:
                log.exception("batch %s: could not renew the stage lease", batch_id)
                continue
            if not held:
                return  # finished (the lease is released) or taken over: the store refuses our writes

    async def _renew(self) -> None:
        """Extend the leases of running lines (at most every second or a third of the lease) and cancel
        those whose batch stopped or that another runner took over."""
        if not self._lines:
            return
        now = time.monotonic()
        if now - self._renewed < min(1.0, self._lease_s / 3):
            return
        self._renewed = now
        store = self.services.store
        assert store is not None
        keys = list(self._lines)
        stop = await asyncio.to_thread(store.batches.renew, self.runner, keys, time.time() + self._lease_s)
        for key in stop:
            task = self._lines.get(key)
            if task is not None:
                task.cancel()

    # --- lines -------------------------------------------------------------------------------

    async def _run_line(self, c: ClaimedRequest) -> None:
        store = self.services.store
        assert store is not None
        request_id = f"req_{uuid.uuid4().hex}"
        body = c.request.get("body") if isinstance(c.request.get("body"), dict) else c.request
        tokens = (0, 0, 0)
        try:
            refusal = await self._key_refusal(c.principal)
            if refusal is not None:
                raise refusal
            answer = await run_request(self.batch_services, principal_from(c.principal), c.endpoint, body)
            ok, result = True, success_line(c.custom_id, 200, request_id, answer)
            tokens = usage_of(c.endpoint, answer)
        except (Overloaded, ServiceUnavailable) as exc:  # not the line's fault: the engine is full or stopping
            await self._release(c, exc)
            return
        except FaceplateError as exc:
            ok, result = False, failure_line(c.custom_id, exc.status, request_id, exc.body())
        except Exception:
            log.exception("batch %s line %d: the request failed", c.batch_id, c.line)
            err = FaceplateError("The server had an error while processing your request. Sorry about that!")
            ok, result = False, failure_line(c.custom_id, err.status, request_id, err.body())
        counted = await asyncio.to_thread(
            store.batches.complete,
            self.runner,
            c.batch_id,
            c.line,
            ok=ok,
            result=result,
            input_tokens=tokens[0],
            cached_tokens=tokens[1],
            output_tokens=tokens[2],
            now=time.time(),
        )
        if not counted:
            log.info("batch %s line %d: result dropped (batch stopped or line taken over)", c.batch_id, c.line)

    async def _release(self, c: ClaimedRequest, exc: FaceplateError) -> None:
        self._backoff_until = time.monotonic() + BACKOFF_S
        log.info("batch %s line %d: %s; it goes back to pending", c.batch_id, c.line, exc.message)
        store = self.services.store
        assert store is not None
        with contextlib.suppress(Exception):  # not released: its lease runs out and it is claimed again
            await asyncio.to_thread(store.batches.release, self.runner, c.batch_id, c.line, time.time())

    async def _key_refusal(self, principal: dict[str, Any]) -> FaceplateError | None:
        """The 401 for lines of a stored key that was revoked or expired after its batch was created
        (read at most every KEY_CHECK_S); None while the key is active, and for static keys."""
        key_id = principal.get("key_id")
        store = self.services.store
        if not key_id or store is None:
            return None
        now = time.monotonic()
        cached = self._keys.get(key_id)
        if cached is not None and now - cached[0] < KEY_CHECK_S:
            return cached[1]
        key = await asyncio.to_thread(store.keys.get, key_id)
        status = "deleted" if key is None else key.status()
        refusal = (
            None
            if status == "active"
            else InvalidApiKey(f"The API key that created this batch ({key_id}) is {status}; its requests are no longer run.")
        )
        self._keys[key_id] = (now, refusal)
        return refusal

    # --- stage work --------------------------------------------------------------------------

    async def _stage(self, row: BatchRow) -> None:
        store = self.services.store
        assert store is not None
        now = time.time()
        if row.status == VALIDATING:
            await self._validate(row)
        elif row.status == CANCELLING:
            await wrap_up(self.services, self.runner, row, "cancelled", "batch_cancelled")
        elif row.status == IN_PROGRESS:
            # past its window or with every line done: completed if every line ran, else expired
            if await asyncio.to_thread(store.batches.mark_finalizing, row.id, self.runner, now):
                await wrap_up(self.services, self.runner, row, None, "batch_expired")
            else:
                await asyncio.to_thread(store.batches.release_stage, row.id, self.runner)
        elif row.status == FINALIZING:
            await wrap_up(self.services, self.runner, row, None, "batch_expired")  # a wrap-up a dead runner left

    async def _validate(self, row: BatchRow) -> None:
        store, blobs = self.services.store, self.services.blobs
        assert store is not None and blobs is not None
        found = await asyncio.to_thread(store.files.get, row.input_file_id, row.owner)

        def validate() -> Any:
            with blobs.open(row.input_file_id) as fh:
                return validate_input(fh, row.endpoint, keep=False)

        checked = None
        if found is not None:
            with contextlib.suppress(FileNotFoundError):
                checked = await asyncio.to_thread(validate)
        now = time.time()
        if checked is None:
            errors = [
                {
                    "code": "file_not_found",
                    "message": f"The input file {row.input_file_id!r} no longer exists.",
                    "param": "input_file_id",
                    "line": None,
                }
            ]
            await asyncio.to_thread(store.batches.fail, row.id, self.runner, errors, now)
        elif checked.errors:
            errors = [dataclasses.asdict(e) for e in checked.errors]
            await asyncio.to_thread(store.batches.fail, row.id, self.runner, errors, now)
        else:
            limit = await self._token_limit(row)

            def start() -> bool:
                with blobs.open(row.input_file_id) as fh:
                    lines = ((b.line, b.custom_id, {"method": b.method, "url": b.url, "body": b.body}) for b in read_lines(fh))
                    return store.batches.start(
                        row.id, self.runner, lines, checked.model, now, enqueued_tokens=checked.tokens, token_limit=limit
                    )

            try:
                await asyncio.to_thread(start)
            except TokenLimitExceeded as over:
                error = {
                    "code": "token_limit_exceeded",
                    "message": (
                        f"Enqueued token limit reached for this API key. Limit: {over.limit:,} enqueued tokens; "
                        f"{over.enqueued:,} are enqueued in unfinished batches and this batch adds about "
                        f"{over.adding:,}. Please try again once some in_progress batches have been completed."
                    ),
                    "param": None,
                    "line": None,
                }
                await asyncio.to_thread(store.batches.fail, row.id, self.runner, [error], time.time())

    async def _token_limit(self, row: BatchRow) -> int | None:
        """The batch's key's limit on enqueued prompt tokens: the key's own, else the server's setting."""
        store = self.services.store
        assert store is not None
        key_id = row.principal.get("key_id")
        key = await asyncio.to_thread(store.keys.get, key_id) if key_id else None
        if key is not None and key.batch_token_limit is not None:
            return key.batch_token_limit
        return self.services.settings.batch_token_limit
