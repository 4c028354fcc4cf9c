"""Helpers every embedding engine shares: input checks, special tokens, length runs, reordering."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from faceplate.engines.embedding_inputs import (
    check_lengths,
    check_token_ids,
    l2_normalise,
    length_buckets,
    longest_first,
    special_affixes,
    unsort,
)
from faceplate.errors import InvalidRequest


def cost(lengths: list[int], runs: list[tuple[int, int]], overhead: float) -> float:
    return sum(overhead + (b - a) * lengths[a] for a, b in runs)


def all_splits(n: int) -> list[list[tuple[int, int]]]:
    out = []
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0, *[i + 1 for i, c in enumerate(cuts) if c], n]
        out.append(list(itertools.pairwise(bounds)))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_length_buckets_is_optimal(seed: int) -> None:
    rng = random.Random(seed)
    lengths = sorted((rng.randint(3, 60) for _ in range(rng.randint(1, 9))), reverse=True)
    overhead = rng.choice([0.0, 4.0, 16.0, 100.0])
    runs = length_buckets(lengths, overhead)
    assert runs[0][0] == 0 and runs[-1][1] == len(lengths)
    assert all(a < b for a, b in runs) and all(runs[i][1] == runs[i + 1][0] for i in range(len(runs) - 1))
    assert cost(lengths, runs, overhead) == min(cost(lengths, s, overhead) for s in all_splits(len(lengths)))


def test_length_buckets_extremes() -> None:
    assert length_buckets([10] * 50, 16.0) == [(0, 50)]  # equal lengths: one pass
    assert length_buckets([200, 5, 5, 5, 5], 16.0) == [(0, 1), (1, 5)]  # one long input gets its own pass
    assert length_buckets([], 16.0) == []


def test_special_affixes() -> None:
    assert special_affixes([101, 7, 8, 102], [7, 8]) == ([101], [102])
    assert special_affixes([1, 7], [7]) == ([1], [])
    assert special_affixes([7], [7]) == ([], [])
    with pytest.raises(ValueError):
        special_affixes([1, 2], [3])


def test_checks_raise_400_on_input() -> None:
    check_token_ids(0, [0, 9], 10)
    with pytest.raises(InvalidRequest) as err:
        check_token_ids(3, [0, 10], 10)
    assert err.value.param == "input" and "input 3" in err.value.message
    check_lengths([[1] * 8], 8)
    with pytest.raises(InvalidRequest) as err:
        check_lengths([[1], [1] * 9], 8)
    assert err.value.code == "context_length_exceeded" and "input 1 has 9 tokens" in err.value.message


def test_reordering_round_trip() -> None:
    seqs = [[1], [1, 2, 3], [1, 2]]
    order = longest_first(seqs)
    assert order == [1, 2, 0]
    rows = [np.full(2, float(i), dtype=np.float32) for i in order]
    assert unsort(rows, order).tolist() == [[0, 0], [1, 1], [2, 2]]


def test_l2_normalise_leaves_zero_vectors_alone() -> None:
    out = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32))
    assert out.tolist() == [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
