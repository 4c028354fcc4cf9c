"""Placement within a pool: weighted rendezvous hashing, the load guard, and the affinity key."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest

from faceplate.engines.base import ChatRequest, CompletionRequest, Message
from faceplate.engines.remote.routing import PREFIX_CHARS, affinity_key, choose, rendezvous


@dataclass(frozen=True)
class M:
    name: str
    weight: float = 1.0
    load: int = 0


def pick(key: str, members: list[M]) -> M:
    return rendezvous(key, members, lambda m: m.name, lambda m: m.weight)


def pick_load(key: str, members: list[M], *, abs_gap: int = 4, rel_gap: float = 1.5, seed: int = 0) -> tuple[M, str]:
    return choose(
        key,
        members,
        name=lambda m: m.name,
        weight=lambda m: m.weight,
        load=lambda m: m.load,
        abs_gap=abs_gap,
        rel_gap=rel_gap,
        rng=random.Random(seed),
    )


KEYS = [f"conversation-{i}" for i in range(3000)]
ABC = [M("http://a:8000"), M("http://b:8000"), M("http://c:8000")]


# ---------------------------------------------------------------- rendezvous


def test_rendezvous_is_deterministic_and_ignores_member_order() -> None:
    first = [pick(k, ABC).name for k in KEYS[:300]]
    assert [pick(k, ABC).name for k in KEYS[:300]] == first
    assert [pick(k, list(reversed(ABC))).name for k in KEYS[:300]] == first
    shuffled = ABC[:]
    random.Random(1).shuffle(shuffled)
    assert [pick(k, shuffled).name for k in KEYS[:300]] == first
    assert len(set(first)) == 3  # and it does spread keys


def test_equal_weights_share_evenly() -> None:
    shares = Counter(pick(k, ABC).name for k in KEYS)
    for m in ABC:
        assert 0.28 < shares[m.name] / len(KEYS) < 0.39


def test_removing_a_member_moves_only_its_keys() -> None:
    four = [*ABC, M("http://d:8000")]
    before = {k: pick(k, four).name for k in KEYS}
    after = {k: pick(k, ABC).name for k in KEYS}
    moved = [k for k in KEYS if before[k] != after[k]]
    assert moved and all(before[k] == "http://d:8000" for k in moved)
    assert len(moved) == sum(1 for k in KEYS if before[k] == "http://d:8000")


def test_adding_a_member_takes_keys_only_for_itself() -> None:
    four = [*ABC, M("http://d:8000")]
    before = {k: pick(k, ABC).name for k in KEYS}
    after = {k: pick(k, four).name for k in KEYS}
    assert all(after[k] in (before[k], "http://d:8000") for k in KEYS)
    assert 0.18 < sum(after[k] == "http://d:8000" for k in KEYS) / len(KEYS) < 0.32


@pytest.mark.parametrize(("heavy", "expected"), [(3.0, 0.75), (2.0, 2 / 3), (0.5, 1 / 3)])
def test_weights_skew_shares_proportionally(heavy: float, expected: float) -> None:
    members = [M("http://light:1"), M("http://heavy:1", weight=heavy)]
    share = sum(pick(k, members).name == "http://heavy:1" for k in KEYS) / len(KEYS)
    assert abs(share - expected) < 0.05


def test_weights_skew_three_way() -> None:
    members = [M("a", 1.0), M("b", 2.0), M("c", 5.0)]
    shares = Counter(pick(k, members).name for k in KEYS)
    for m in members:
        assert abs(shares[m.name] / len(KEYS) - m.weight / 8) < 0.05


# ---------------------------------------------------------------- the load guard


def loaded(preferred_load: int, others: int, key: str = "k") -> tuple[list[M], M]:
    """ABC with the key's preferred member at ``preferred_load`` and the rest at ``others``."""
    pref = pick(key, ABC)
    members = [M(m.name, m.weight, preferred_load if m.name == pref.name else others) for m in ABC]
    return members, next(m for m in members if m.name == pref.name)


@pytest.mark.parametrize(
    ("mine", "least", "abs_gap", "rel_gap"),
    [
        (0, 0, 4, 1.5),  # idle
        (5, 1, 4, 1.5),  # gap 4, not more than abs
        (6, 4, 1, 1.5),  # gap 2 > abs 1, but 6 is not more than 1.5 x 4
        (30, 20, 4, 1.5),  # gap 10, but 30 is not more than 1.5 x 20
        (9, 0, 9, 1.5),  # at the absolute bound exactly
    ],
)
def test_the_affine_member_is_kept_under_the_thresholds(mine: int, least: int, abs_gap: int, rel_gap: float) -> None:
    members, pref = loaded(mine, least)
    for seed in range(20):
        assert pick_load("k", members, abs_gap=abs_gap, rel_gap=rel_gap, seed=seed) == (pref, "affinity")


@pytest.mark.parametrize(("mine", "least"), [(6, 1), (10, 0), (31, 20)])
def test_the_affine_member_is_left_past_both_thresholds(mine: int, least: int) -> None:
    members, pref = loaded(mine, least)
    seen = set()
    for seed in range(40):
        member, why = pick_load("k", members, seed=seed)
        assert why == "balanced" and member != pref  # the busiest never wins a pair
        seen.add(member.name)
    assert len(seen) == 2  # two random candidates: either of the others may take it


def test_power_of_two_choices_takes_the_less_loaded_of_the_pair() -> None:
    pref = pick("k", ABC)
    loads = dict(zip(sorted(m.name for m in ABC if m != pref), (3, 7), strict=True))
    loads[pref.name] = 40
    members = [M(m.name, m.weight, loads[m.name]) for m in ABC]
    for seed in range(40):
        rng = random.Random(seed)
        a, b = rng.sample(members, 2)
        expected = a if a.load <= b.load else b
        assert pick_load("k", members, seed=seed) == (expected, "balanced")


def test_a_lone_member_is_always_affine() -> None:
    assert pick_load("k", [M("only", load=1000)]) == (M("only", load=1000), "affinity")


# ---------------------------------------------------------------- the affinity key


def conv(*turns: tuple[str, str], affinity: str | None = None) -> ChatRequest:
    return ChatRequest("r", tuple(Message(role, text) for role, text in turns), affinity=affinity)


SYSTEM, FIRST = ("system", "You are terse."), ("user", "Tell me about Paris.")


def test_explicit_affinity_wins() -> None:
    a = conv(SYSTEM, FIRST, affinity="user-42")
    b = conv(("user", "something else entirely"), affinity="user-42")
    assert affinity_key(a) == affinity_key(b) == "k:user-42"
    assert affinity_key(CompletionRequest("r", "x", affinity="user-42")) == "k:user-42"


def test_later_turns_do_not_change_the_key() -> None:
    one = conv(SYSTEM, FIRST)
    three = conv(SYSTEM, FIRST, ("assistant", "It is in France."), ("user", "And Lyon?"))
    assert affinity_key(one) == affinity_key(three)


def test_system_and_first_user_turn_name_the_conversation() -> None:
    base = affinity_key(conv(SYSTEM, FIRST))
    assert affinity_key(conv(("system", "You are verbose."), FIRST)) != base
    assert affinity_key(conv(SYSTEM, ("user", "Tell me about Rome."))) != base
    assert affinity_key(conv(FIRST)) != base


def test_the_key_is_bounded_per_turn() -> None:
    long = conv(("system", "x" * 10_000), ("user", "y" * 10_000))
    key = affinity_key(long)
    assert len(key) <= 2 * (PREFIX_CHARS + 8)
    assert affinity_key(conv(("system", "x" * 10_000 + "z"), ("user", "y" * 10_000))) == key  # past a turn's bound


def test_a_long_system_prompt_does_not_crowd_out_the_user_turn() -> None:
    """A tenant's sessions share a long system prompt; their first user turns still tell them apart."""
    tenant = ("system", "x" * 10_000)
    assert affinity_key(conv(tenant, ("user", "Plan my trip."))) != affinity_key(conv(tenant, ("user", "Fix my code.")))


def test_completion_keys() -> None:
    assert affinity_key(CompletionRequest("r", "Once upon")) == affinity_key(CompletionRequest("s", "Once upon"))
    assert affinity_key(CompletionRequest("r", "Once upon")) != affinity_key(CompletionRequest("r", "Twice upon"))
    assert affinity_key(CompletionRequest("r", (1, 2, 3))) == "p:1,2,3"
    assert affinity_key(CompletionRequest("r", (1, 2, 3))) != affinity_key(CompletionRequest("r", (1, 2, 4)))
