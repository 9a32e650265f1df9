"""Batch: the adaptive batch size of the seed, and how work becomes batches of it.

The size is computed once, before the pipeline is built, from the expected count.
Two kinds of batches use it:

* **Parts** (the scale-up, ``pack_parts``): whole connected components of templates,
  packed by the plan into parts of about ``batch_size`` rows per replica. One part
  in one replica is one write transaction (``transforms.write``), so a part's copies
  and the relationships between them are created together, and a part's content is
  fixed by the plan: the same in every run of an operation, which is what makes its
  ledger of written batches exact.
* **Row batches** (the demo loader, ``BatchRowGroups``): rows grouped by
  ``GroupIntoBatches``, whose composition depends on arrival order; fine for rows
  written with ``MERGE``.

``GroupIntoBatches`` takes a fixed integer, so the size is chosen from the expected
number of items: small graphs get small batches (a few transactions are not worth
splitting further), large graphs large ones (fewer round trips and plans), within the
seed's tiers. Writes get half the read size: a write transaction holds locks and
transaction state on the server, so it is kept smaller.
"""

from __future__ import annotations

import dataclasses
import math
from array import array
from typing import Any, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np

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


@dataclasses.dataclass(frozen=True)
class TemplatePart:
    """Templates that are read together and written together, one transaction per
    replica: whole components, or one slice of a component too large for one batch.

    ``nodes``: the templates' internal node ids (int64, packed), in plan order;
    ``extra``: one byte per template, 1 when it has the extra (partial-replica) copy.
    Packed bytes keep a million templates' parts a few MB when the pipeline is pickled.
    """

    index: int
    nodes: bytes
    extra: bytes

    def node_ids(self) -> List[int]:
        return array("q", self.nodes).tolist()

    def copies(self, base_copies: int) -> List[int]:
        """Copies of each template, in the order of ``node_ids``."""
        return [base_copies + flag for flag in self.extra]

    def __len__(self) -> int:
        return len(self.extra)


def pack_parts(nodes: np.ndarray, extra: np.ndarray, components: np.ndarray,
               weights: np.ndarray, batch_size: int) -> Tuple[TemplatePart, ...]:
    """Pack components (in plan order: by their first template) into parts of at most
    ``batch_size`` rows per replica (``weights``: rows of one template's copy, itself
    and its relationships), so that ``--batch-size`` bounds the rows of a transaction.

    A component heavier than ``batch_size`` is cut into slices of at most
    ``batch_size`` (at least one template each), each a part of its own: its
    relationships across slices are then written after every part
    (``transforms.replicate``'s links).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    order = np.argsort(components, kind="stable")
    grouped = components[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]]) if len(order) else []
    ends = np.r_[starts[1:], len(order)] if len(order) else []
    member_weights = weights[order]
    component_weights = np.add.reduceat(member_weights, starts) if len(order) else []
    parts: List[TemplatePart] = []
    current: List[np.ndarray] = []
    current_weight = 0

    def close(members_list: List[np.ndarray]) -> None:
        members = np.concatenate(members_list)
        parts.append(TemplatePart(len(parts), nodes[members].astype(np.int64).tobytes(),
                                  extra[members].astype(np.uint8).tobytes()))

    for start, end, weight in zip(starts, ends, component_weights):
        members = order[start:end]
        if weight > batch_size:
            if current:
                close(current)
                current, current_weight = [], 0
            slice_start, slice_weight = 0, 0
            for offset, member_weight in enumerate(member_weights[start:end].tolist()):
                if slice_weight and slice_weight + member_weight > batch_size:
                    close([members[slice_start:offset]])
                    slice_start, slice_weight = offset, 0
                slice_weight += member_weight
            close([members[slice_start:]])
            continue
        if current and current_weight + weight > batch_size:
            close(current)
            current, current_weight = [], 0
        current.append(members)
        current_weight += int(weight)
    if current:
        close(current)
    return tuple(parts)
