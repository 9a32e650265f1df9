"""Batch: the adaptive batch size of the seed, and how row groups become batches.

The size is computed once, before the pipeline is built, from the expected count.

``GroupIntoBatches`` takes a fixed integer, so the size is chosen from the expected
number of items: small graphs get small batches (a few transactions are not worth
splitting further), large graphs large ones (fewer round trips and plans), within the
seed's tiers. Writes get half the read size: a write transaction holds locks and
transaction state on the server, so it is kept smaller.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import apache_beam as beam

from transforms.cypher import WriteKind, is_node_kind

#: (items below this bound, smallest batch, largest batch), from the seed.
TIERS = (
    (1_000, 100, 500),
    (10_000, 500, 1_000),
    (100_000, 1_000, 5_000),
    (math.inf, 5_000, 10_000),
)
#: Where the open top tier reaches its largest batch.
_TOP_TIER_FULL_AT = 10_000_000
OPERATIONS = ("read", "write")
WRITE_FACTOR = 0.5


def adaptive_batch_size(total_items: int, operation: str = "write") -> int:
    """Batch size for ``total_items`` items: log-linear within the seed's tier.

    Inside a tier the size grows with the logarithm of the item count from the tier's
    smallest to its largest batch, so there is no jump inside a tier and sizes grow
    with the graph; ``operation="write"`` halves it.
    """
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {OPERATIONS}, got {operation!r}")
    if not isinstance(total_items, int) or total_items < 0:
        raise ValueError(f"total_items must be a non-negative integer, got {total_items!r}")
    lower = 0
    for upper, smallest, largest in TIERS:
        if total_items < upper:
            break
        lower = upper
    top = _TOP_TIER_FULL_AT if math.isinf(upper) else upper
    position = 0.0
    if total_items > max(lower, 1):
        position = min(1.0, math.log(total_items / max(lower, 1)) / math.log(top / max(lower, 1)))
    size = smallest + (largest - smallest) * position
    if operation == "write":
        size *= WRITE_FACTOR
    return max(1, int(size))


class BatchRowGroups(beam.PTransform):
    """``(node row groups, relationship row groups)``, both keyed ``(kind, shard)`` →
    ``(node batches, relationship batches)``, each batch ``((kind, shard), groups)``
    of about ``batch_size`` rows.

    A row group is a list of rows of one kind, or a compact description of such a list
    (the copies of one template, say) that the sink expands: grouping rows before
    ``GroupIntoBatches`` makes Beam pay its per-element costs per group. A batch takes
    about ``batch_size / rows_per_group`` groups, so it may hold a few rows more or
    fewer than ``batch_size``: the sink re-splits it (``split_into_transactions``).

    Why one ``GroupIntoBatches`` for both kinds: Beam's FnApiRunner lost the final,
    partial batches of one of two ``GroupIntoBatches`` whose inputs came from the same
    fused stage (measured on 2.77: 25 elements, batches of 10, the 5 left over
    vanished). A single one cannot hit that, whatever stages the rows come from.
    """

    def __init__(self, batch_size: int, rows_per_group: float = 1.0) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not rows_per_group > 0:
            raise ValueError(f"rows_per_group must be positive, got {rows_per_group!r}")
        self._groups_per_batch = max(1, round(batch_size / rows_per_group))

    def expand(self, node_and_relationship_groups):
        return tuple(
            node_and_relationship_groups
            | "AllGroups" >> beam.Flatten()
            | "GroupIntoBatches" >> beam.GroupIntoBatches(self._groups_per_batch)
            | "SplitByKind" >> beam.Partition(_node_or_relationship, 2)
        )


def _node_or_relationship(batch: Tuple[Tuple[WriteKind, int], Any], partitions: int) -> int:
    (kind, _shard), _groups = batch
    return 0 if is_node_kind(kind) else 1


def split_into_transactions(rows: Sequence[Any], max_rows: Optional[int]) -> List[Sequence[Any]]:
    """``rows`` in consecutive slices of at most ``max_rows`` (all in one if None): the
    sink writes one transaction per slice, which keeps the bound on rows per
    transaction exact whatever the row groups added up to."""
    size = max_rows or len(rows) or 1
    return [rows[start:start + size] for start in range(0, len(rows), size)]
