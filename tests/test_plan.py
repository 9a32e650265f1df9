"""The plan's arithmetic without Neo4j: components, the partial replica's choice, parts.
(The plan against a real graph is tested in test_partial_replicas.py.)"""

import random
from collections import defaultdict

import numpy as np
import pytest

from pipelines.plan import (
    breadth_first,
    choose_extra_copies,
    connected_components,
    plan_order_key,
)
from transforms.batch import pack_parts


def reference_components(count, edges):
    """Components by plain breadth-first search, named by their smallest member."""
    neighbours = defaultdict(set)
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    name = [-1] * count
    for start in range(count):
        if name[start] >= 0:
            continue
        queue, seen = [start], {start}
        for node in queue:
            for other in neighbours[node]:
                if other not in seen:
                    seen.add(other)
                    queue.append(other)
        for node in queue:
            name[node] = min(queue)
    return name


def random_graph(count, edges, seed):
    rng = random.Random(seed)
    pairs = [(rng.randrange(count), rng.randrange(count)) for _ in range(edges)]
    return np.array([a for a, _ in pairs], dtype=np.int64), np.array([b for _, b in pairs], dtype=np.int64)


@pytest.mark.parametrize("count,edges,seed", [(1, 0, 0), (10, 0, 1), (50, 30, 2), (400, 380, 3),
                                              (300, 2000, 4), (1000, 999, 5)])
def test_components_equal_a_breadth_first_search(count, edges, seed):
    starts, ends = random_graph(count, edges, seed)
    found = connected_components(count, starts, ends)
    assert found.tolist() == reference_components(count, zip(starts.tolist(), ends.tolist()))


def test_a_long_chain_is_one_component():
    count = 5000
    order = list(range(count))
    random.Random(7).shuffle(order)  # a path through the positions in random order
    starts, ends = np.array(order[:-1]), np.array(order[1:])
    assert set(connected_components(count, starts, ends).tolist()) == {0}


@pytest.mark.parametrize("needed", range(0, 21))
def test_extra_copies_take_whole_components_in_plan_order_and_split_at_most_one(needed):
    # Components: {0,1,2} {3} {4,5,6,7,8,9} {10,11} {12..19} {20}
    edges = [(0, 1), (1, 2), (4, 5), (5, 6), (6, 7), (7, 8), (8, 9), (10, 11),
             *((i, i + 1) for i in range(12, 19))]
    starts, ends = np.array([a for a, _ in edges]), np.array([b for _, b in edges])
    components = connected_components(21, starts, ends)
    extra, whole, split = choose_extra_copies(components, needed, starts, ends)
    assert int(extra.sum()) == needed
    taken = defaultdict(set)
    for position in np.flatnonzero(extra).tolist():
        taken[int(components[position])].add(position)
    sizes = {root: int((components == root).sum()) for root in set(components.tolist())}
    partial = [root for root, members in taken.items() if len(members) < sizes[root]]
    assert len(partial) == split <= 1
    assert whole == len(taken) - split
    # Whole components come first in plan order; the split one right after them.
    roots = sorted(taken)
    assert roots == sorted(sizes)[:len(roots)]
    if partial:
        assert partial == [roots[-1]]
        # The part taken of the split component is connected (breadth-first prefix).
        members = taken[partial[0]]
        inside = [(a, b) for a, b in edges if a in members and b in members]
        names = reference_components(21, inside)
        assert len({names[m] for m in members}) == 1


def test_breadth_first_order_starts_at_the_first_member():
    starts, ends = np.array([5, 5, 2]), np.array([2, 9, 7])
    assert breadth_first(np.array([9, 2, 5, 7]), starts, ends) == [2, 5, 7, 9]


def test_parts_hold_every_template_once_and_components_whole_unless_too_heavy():
    rng = random.Random(11)
    count = 600
    starts, ends = random_graph(count, 450, 12)
    components = connected_components(count, starts, ends)
    weights = np.array([rng.randint(1, 8) for _ in range(count)], dtype=np.int64)
    nodes = np.arange(10_000, 10_000 + count, dtype=np.int64)
    extra = np.array([rng.randint(0, 1) for _ in range(count)], dtype=np.uint8)
    batch = 60
    parts = pack_parts(nodes, extra, components, weights, batch)
    seen = [node for part in parts for node in part.node_ids()]
    assert sorted(seen) == nodes.tolist()
    assert [part.index for part in parts] == list(range(len(parts)))
    part_of = {node: part.index for part in parts for node in part.node_ids()}
    for part in parts:
        positions = [node - 10_000 for node in part.node_ids()]
        assert [flag for flag in part.extra] == extra[positions].tolist()
        roots = set(components[positions].tolist())
        weight = int(weights[positions].sum())
        if len(roots) > 1 or weight > batch:
            # Several components: each whole, and the part closes once it is full.
            for root in roots:
                members = np.flatnonzero(components == root) + 10_000
                assert {part_of[m] for m in members.tolist()} == {part.index}
    for root in set(components.tolist()):
        members = np.flatnonzero(components == root)
        if int(weights[members].sum()) <= batch:
            assert len({part_of[m + 10_000] for m in members.tolist()}) == 1
        else:  # a heavy component is cut into slices of at most batch rows (one template each at least)
            slices = {part_of[m + 10_000] for m in members.tolist()}
            for index in slices:
                sliced = [node - 10_000 for node in parts[index].node_ids()]
                assert int(weights[sliced].sum()) <= batch or len(sliced) == 1


def test_plan_order_is_a_hash_of_the_id_not_the_id_order():
    ids = [f"vm-{i:04d}" for i in range(100)]
    keys = [plan_order_key(i) for i in ids]
    assert keys == [plan_order_key(i) for i in ids]  # deterministic
    assert sorted(ids, key=plan_order_key) != ids
