"""The scheduler's bookkeeping: slots (one llama.cpp sequence each, one choice of a job) and counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from faceplate.engines.llamacpp.grammar import SequenceGrammar
from faceplate.engines.llamacpp.sampling import SamplerChain
from faceplate.engines.textstream import TextStream

if TYPE_CHECKING:
    from faceplate.engines.llamacpp.job import Job


@dataclass(eq=False)
class Slot:
    seq: int
    cache: list[int] = field(default_factory=list)  # tokens whose KV sits in this sequence, positions 0..
    job: Job | None = None
    choice: int = 0
    pending: list[int] = field(default_factory=list)  # prompt tokens still to prefill
    follower_of: Slot | None = None  # n > 1: waits for the leader's prefill, then copies it
    next_token: int | None = None  # sampled, to be decoded next step
    generated: int = 0
    reported: int = 0  # tokens already accounted for in a TextDelta
    sampler: SamplerChain | None = None
    grammar: SequenceGrammar | None = None
    text: TextStream | None = None
    batch_index: int = -1

    def reset(self) -> None:
        """Forget the job (the cache stays as it is); frees the sampler chain."""
        if self.sampler is not None:
            self.sampler.close()
        self.job, self.sampler, self.text, self.follower_of, self.grammar = None, None, None, None, None
        self.pending, self.next_token, self.batch_index = [], None, -1


@dataclass
class Counters:
    submitted: int = 0
    completed: int = 0
    cancelled: int = 0
    rejected: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    prompt_tokens_reused: int = 0
    generated_tokens: int = 0
    steps: int = 0
    sequences_moved: int = 0  # running sequences moved down to keep them packed from 0 (prefix.pack)
    step_seconds: float = 0.0  # in llama_decode and sampling


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
