"""What a check is, what it returns, and running a set of them against one server.

A check is a named coroutine with a one-line statement of the contract rule it tests. It returns
a short note when the server keeps the rule, raises ``Fail`` (with the exchange as evidence) when
it breaks it, or ``Skip`` when the rule cannot be tested here. Checks that read the same exchange
share it through ``Context.once``, so twenty rows cost about as many small requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from faceplate.check.contract import Contract
from faceplate.check.http import Reply, TransportError, Upstream

Status = Literal["pass", "fail", "skip"]
CHAT = "/chat/completions"
# What reading a body shaped too unlike OpenAI's raises in a check: a break too, not a crash.
UNREADABLE = (KeyError, IndexError, TypeError, AttributeError, ValueError)


class Fail(Exception):
    def __init__(self, reason: str, reply: Reply | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.evidence = reply.evidence() if reply is not None else None


class Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Result:
    name: str
    rule: str
    status: Status
    reason: str
    evidence: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rule": self.rule, "status": self.status, "reason": self.reason, "evidence": self.evidence}


@dataclass
class Context:
    """Everything a check may use; one per run."""

    upstream: Upstream
    contract: Contract
    model: str | None  # the chat model (given, or found among the listed ones)
    models: Reply  # GET /models, fetched once before any check
    embedding_model: str | None = None
    key_given: bool = False
    _shared: dict[str, asyncio.Task[Any]] = field(default_factory=dict)

    async def once(self, key: str, make: Callable[[], Awaitable[Any]]) -> Any:
        """``make()``'s result, computed once per key however many checks ask at the same time."""
        if key not in self._shared:
            self._shared[key] = asyncio.ensure_future(make())
        return await asyncio.shield(self._shared[key])

    def chat_model(self) -> str:
        if self.model is None:
            raise Skip("no chat model: /v1/models listed none that answers chat; pass --model")
        return self.model

    def chat_body(self, **extra: Any) -> dict[str, Any]:
        # Counting is a prompt every instruction-tuned model continues past any small limit.
        return {
            "model": self.chat_model(),
            "messages": [{"role": "user", "content": "Count from 1 to 50, separated by commas."}],
            "max_tokens": 8,
            "temperature": 0,
            **extra,
        }

    async def post_once(self, key: str, path: str, body: dict[str, Any]) -> Reply:
        return await self.once(key, lambda: self.upstream.post(path, body))

    async def stream_once(self, key: str, path: str, body: dict[str, Any]) -> Reply:
        return await self.once(key, lambda: self.upstream.stream(path, body))

    def valid(self, reply: Reply, schema: str, instance: Any = None) -> None:
        """Fail unless ``instance`` (default: the reply's JSON body) is a valid ``schema``."""
        problem = self.contract.problem(reply.body if instance is None else instance, schema)
        if problem is not None:
            raise Fail(problem, reply)


CheckFn = Callable[[Context], Awaitable[str]]


@dataclass(frozen=True)
class Check:
    name: str
    rule: str
    run: CheckFn


def ok(reply: Reply, status: int = 200) -> Any:
    """The JSON body of ``reply``; fails unless it has ``status`` and a JSON object body."""
    if reply.status != status:
        raise Fail(f"HTTP {reply.status}, expected {status}", reply)
    body = reply.body
    if not isinstance(body, dict):
        raise Fail("the body is not a JSON object", reply)
    return body


def expect(condition: bool, reason: str, reply: Reply | None = None) -> None:
    if not condition:
        raise Fail(reason, reply)


def select(checks: Sequence[Check], only: Sequence[str] | None) -> list[Check]:
    """Checks named in ``only`` (a name, or a group prefix such as ``chat.stream``); all when empty."""
    if not only:
        return list(checks)
    picked = [c for c in checks if any(c.name == o or c.name.startswith(o.rstrip(".") + ".") for o in only)]
    unknown = [o for o in only if not any(c.name == o or c.name.startswith(o.rstrip(".") + ".") for c in checks)]
    if unknown:
        raise ValueError(f"no check named {', '.join(unknown)} (see --list)")
    return picked


async def run_one(check: Check, ctx: Context, gate: asyncio.Semaphore) -> Result:
    async with gate:
        try:
            note = await check.run(ctx)
            return Result(check.name, check.rule, "pass", note)
        except Fail as exc:
            return Result(check.name, check.rule, "fail", exc.reason, exc.evidence)
        except Skip as exc:
            return Result(check.name, check.rule, "skip", exc.reason)
        except TransportError as exc:
            return Result(check.name, check.rule, "fail", f"no answer: {exc}")
        except UNREADABLE as exc:
            return Result(check.name, check.rule, "fail", f"unreadable answer ({type(exc).__name__}: {exc})")


async def run_checks(checks: Sequence[Check], ctx: Context, *, concurrency: int = 4) -> list[Result]:
    """Every check, a few at a time (a CPU-bound server answers a handful faster than a flood), in order."""
    gate = asyncio.Semaphore(concurrency)
    return list(await asyncio.gather(*(run_one(c, ctx, gate) for c in checks)))
