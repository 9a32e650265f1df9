"""The adaptive batch size of the seed, computed once before the pipeline is built.

``GroupIntoBatches`` takes a fixed integer, so the size is chosen from the expected
number of items: small graphs get small batches (a few transactions are not worth
splitting further), large graphs large ones (fewer round trips and plans), within the
seed's tiers. Writes get half the read size: a write transaction holds locks and
transaction state on the server, so it is kept smaller.
"""

from __future__ import annotations

import math

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
