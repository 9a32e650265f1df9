"""The adaptive batch sizer (the seed's tiers) and how batches are cut into transactions."""

import pytest

from transforms.batch import TIERS, adaptive_batch_size, split_into_transactions


@pytest.mark.parametrize("items, smallest, largest", [
    (0, 100, 500), (999, 100, 500),
    (1_000, 500, 1_000), (9_999, 500, 1_000),
    (10_000, 1_000, 5_000), (99_999, 1_000, 5_000),
    (100_000, 5_000, 10_000), (5_000_000, 5_000, 10_000), (10**9, 5_000, 10_000),
])
def test_read_sizes_stay_inside_the_seed_tiers(items, smallest, largest):
    assert smallest <= adaptive_batch_size(items, "read") <= largest


@pytest.mark.parametrize("items", [0, 500, 5_000, 35_000, 960_000, 10**8])
def test_writes_are_half_of_reads(items):
    assert adaptive_batch_size(items, "write") == adaptive_batch_size(items, "read") // 2


def test_sizes_grow_with_the_graph():
    sizes = [adaptive_batch_size(n, "read") for n in (10, 100, 1_000, 5_000, 50_000, 500_000)]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert TIERS[-1][2] == adaptive_batch_size(10**9, "read")


@pytest.mark.parametrize("bad", [-1, 1.5, "10"])
def test_bad_counts_are_refused(bad):
    with pytest.raises(ValueError):
        adaptive_batch_size(bad)


def test_unknown_operation_is_refused():
    with pytest.raises(ValueError, match="operation"):
        adaptive_batch_size(10, "delete")


def test_batches_are_cut_into_transactions_of_at_most_the_bound():
    rows = list(range(10))
    assert split_into_transactions(rows, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert split_into_transactions(rows, None) == [rows]
    assert split_into_transactions([], 3) == []
