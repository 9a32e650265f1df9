"""``GenerateDemoTenant``: the demo tenant's rows inside a Beam pipeline, generated in
a DoFn from small chunk descriptors."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.cypher import WriteKind, is_node_kind
from transforms.demo.layout import Tenant
from transforms.demo.rows import NODES, RELATIONSHIPS, check_range, chunk_rows
from transforms.demo.spec import DemoTenantSpec
from transforms.model import METRICS_NAMESPACE


DEFAULT_CHUNK_SIZE = 1_000
#: Rows per emitted group: one Beam element each (what ``BatchRowGroups`` calls a row group).
ROWS_PER_GROUP = 100


def chunk_ranges(start: int, end: int, chunk_size: int) -> List[Tuple[int, int]]:
    """``[(start, end), ...]`` covering ``range(start, end)`` in steps of ``chunk_size``."""
    return [(first, min(first + chunk_size, end)) for first in range(start, end, chunk_size)]


class _GenerateChunkFn(beam.DoFn):
    """``(start, end)`` → the rows of those resource indices, in groups of one key
    (node groups: main output, relationship groups: ``RELATIONSHIPS``)."""

    def __init__(self, spec: DemoTenantSpec, shards: int) -> None:
        self._spec = spec
        self._shards = shards

    def setup(self) -> None:
        self._tenant = Tenant(self._spec)
        self._generated = Metrics.counter(METRICS_NAMESPACE, "demo_resources_generated")

    def process(self, chunk: Tuple[int, int]) -> Iterator:
        start, end = chunk
        groups: Dict[Tuple[WriteKind, int], List[Dict[str, Any]]] = {}
        for _, (key, row) in chunk_rows(self._tenant, start, end, self._shards):
            group = groups.setdefault(key, [])
            group.append(row)
            if len(group) == ROWS_PER_GROUP:
                yield self._output(key, groups.pop(key))
        for key, group in groups.items():
            yield self._output(key, group)
        self._generated.inc(end - start)

    @staticmethod
    def _output(key: Tuple[WriteKind, int], group: List[Dict[str, Any]]):
        if is_node_kind(key[0]):
            return key, group
        return beam.pvalue.TaggedOutput(RELATIONSHIPS, (key, group))


class GenerateDemoTenant(beam.PTransform):
    """Pipeline root → ``{"nodes": ..., "relationships": ...}`` of a demo tenant.

    Both PCollections hold row groups ``((kind, shard), [row, ...])`` as ``BatchRowGroups``
    takes them (``rows_per_group=ROWS_PER_GROUP``; a group holds at most that many):
    node rows are full property maps with ``id``, relationship rows ``{"start", "end",
    "props"}`` with both ends matched by ``(:Label {id})``. ``shards`` (the sink's
    concurrent writes) spreads rows over ``range(shards)`` by resource group.
    ``chunk_size`` resource indices are generated per DoFn call; the rows do not depend
    on it (how they are grouped does).

    ``start``/``end`` restrict it to the rows of resource indices ``[start, end)``
    (default: all). Cut at multiples of ``BLOCK_SIZE``, consecutive ranges written in
    order never write a relationship before its ends: a relationship's ends belong to
    its own range or, for tenant-wide nodes, to the first.
    """

    def __init__(self, spec: DemoTenantSpec, shards: int, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 start: int = 0, end: Optional[int] = None) -> None:
        super().__init__()
        if not isinstance(spec, DemoTenantSpec):
            raise TypeError(f"spec must be a DemoTenantSpec, got {type(spec).__name__}")
        end = spec.resources if end is None else end
        check_range(spec, start, end, shards)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self._spec = spec
        self._shards = shards
        self._chunk_size = chunk_size
        self._range = (start, end)

    def expand(self, pbegin):
        rows = (
            pbegin
            | "Chunks" >> beam.Create(chunk_ranges(*self._range, self._chunk_size))
            | "SpreadChunks" >> beam.Reshuffle()
            | "Generate" >> beam.ParDo(_GenerateChunkFn(self._spec, self._shards)).with_outputs(
                RELATIONSHIPS, main=NODES)
        )
        return {NODES: rows[NODES], RELATIONSHIPS: rows[RELATIONSHIPS]}
