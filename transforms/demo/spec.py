"""Which demo tenant: a tenant id, a size, a seed and a number of subscriptions."""

from __future__ import annotations

import dataclasses
import re


MAX_RESOURCES = 100_000_000
MAX_SUBSCRIPTIONS = 1_000
_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")


@dataclasses.dataclass(frozen=True)
class DemoTenantSpec:
    """Which demo tenant: its id, how many abstracted resources, the seed, subscriptions.

    ``tenant_id`` is written into the ``tenant_id`` of every node but the shared ones
    (``Region``, ``Tag``) and into the ids of the tenant-wide nodes, so it is restricted
    to letters, digits, ``.``, ``_`` and ``-``.
    """

    tenant_id: str
    resources: int
    seed: int = 0
    subscriptions: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.tenant_id, str) or not _TENANT_ID.match(self.tenant_id):
            raise ValueError(
                f"tenant_id must be 1-100 letters, digits, '.', '_' or '-' (starting with a "
                f"letter or digit), got {self.tenant_id!r}")
        for name, value, low, high in (
            ("resources", self.resources, 1, MAX_RESOURCES),
            ("seed", self.seed, 0, 2**63 - 1),
            ("subscriptions", self.subscriptions, 1, MAX_SUBSCRIPTIONS),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer from {low} to {high:,}, got {value!r}")
