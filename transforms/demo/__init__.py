"""Generate a realistic demo Azure tenant graph, of any size, deterministically.

The demo tenant stands in for a real scanned tenant (the model Azure Tenant Grapher
writes) wherever one is needed: ``run_local.sh``, the tests, the benchmarks. Its rows
are exactly what ``transforms.batch.BatchRowGroups`` and ``transforms.write.WriteToNeo4j``
take, so it is loaded through the project's own sink.

What a tenant contains (``expected_counts`` gives exact numbers for a spec):

* The tenant's own nodes, all carrying its ``tenant_id``: ``Tenant``, ``Subscription``,
  ``ResourceGroup``, ``User``, ``ServicePrincipal``, ``ManagedIdentity``,
  ``RoleDefinition``, ``RoleAssignment``, ``KeyVaultSecret``. Their ids are ARM-style
  and scoped by the tenant's own subscriptions, or GUIDs hashed with the tenant, so two
  demo tenants never share (and never overwrite) one of them.
* Shared nodes, as in real graphs: ``Region`` (id: the location name) and ``Tag`` (id:
  ``key=value``) carry no ``tenant_id`` and their ids and properties do not depend on
  the tenant, so every demo tenant in a database links to the same ones (hubs); loading
  tenants in any order gives the same graph. (A real graph's ``Region`` or ``Tag`` of
  the same id would be overwritten: demo tenants belong in a database of their own.)
* ``spec.resources`` abstracted ``:Resource`` nodes in resource groups of 5 to 40, each
  built from one workload (network hub, VMs, web apps, SQL, mixed): VNets and subnets,
  NSGs, public IPs, NICs, managed disks, VMs, storage accounts, key vaults, App Service
  plans and web apps, Application Insights, SQL servers and databases, private
  endpoints, Log Analytics workspaces. Properties differ by type; ``properties`` is the
  ARM JSON shape of the type (200 to ~5,000 characters).
* Ids as Azure Tenant Grapher abstracts them: an abstracted resource's ``id`` is its
  type's prefix and 16 hex digits of a hash of its ARM id (``vm-a1b2c3d4e5f6a7b8``,
  ``subnet-…``; prefixes in ``catalogue.TYPES``), so id order says nothing about
  resource groups or links. The ARM id is its ``original_id`` and the ``id`` of its
  ``:Resource:Original`` twin (real-looking name, without the abstraction properties),
  linked ``(abstracted)-[:SCAN_SOURCE_NODE]->(original)``.
* About 1 resource↔resource relationship per resource, nearly all inside a resource
  group (``CONTAINS``, ``USES_SUBNET``, ``SECURED_BY``, ``CONNECTED_TO``,
  ``DEPENDS_ON``, ``USES``, ``USES_NETWORK``, ``CONNECTED_TO_PE``, ``MONITORS``,
  ``LOGS_TO``, ``SENDS_DIAG_TO``), and 2 to 3 to shared and tenant nodes (the resource
  group's ``CONTAINS``, ``LOCATED_IN``, ``TAGGED_WITH``, ``USES_IDENTITY``,
  ``CREATED_BY``, ``STORES_SECRET``).

How it stays deterministic and bounded:

* The layout is cut into blocks of ``BLOCK_SIZE`` resource indices; a block is split
  into resource groups and filled with workloads by a random generator seeded with
  (tenant, seed, block), and each resource's values come from one seeded with
  (tenant, seed, index). Nothing depends on how the index range is chunked, nor on
  ``spec.resources`` except where the tenant ends, so the same spec always yields the
  same rows, in the same order when the chunks are concatenated.
* A relationship is always emitted with its later resource and points back to earlier
  ones in the same resource group, so the truncated last block never leaves a
  dangling end. Every node is emitted exactly once per tenant (tenant-wide and shared
  nodes with index 0, a resource group's nodes with its first resource): ``MERGE``
  without a uniqueness constraint could otherwise create duplicates when two batches
  run concurrently (so load two tenants one after the other, not at once).
* ``GenerateDemoTenant`` creates only small ``(start, end)`` chunk descriptors with
  ``beam.Create`` (measured: ~250 µs per created element) and generates the rows in a
  DoFn, one block plan (``BLOCK_SIZE`` slots) in memory at a time.

Rows are keyed ``(write kind, shard)`` and leave the transform in groups of up to
``ROWS_PER_GROUP`` rows of one key (``BatchRowGroups`` takes row groups: Beam's
per-element costs are then paid per group). The shard of everything that belongs to a
resource group is derived from that group, so relationship batches of different shards
touch disjoint resources (the sink writes shards in parallel); tenant-wide nodes go
round-robin.

The modules, in the order they build on each other: ``spec`` (which tenant),
``catalogue`` (its vocabulary), ``layout`` (resource groups and links), ``properties``
(what each resource type carries), ``rows`` (the write rows) and ``generate`` (the Beam
transform).
"""

from transforms.demo.catalogue import INDEX_SPECS, NODE_LABELS, RESOURCE_TYPES, SHARED_LABELS
from transforms.demo.generate import ROWS_PER_GROUP, GenerateDemoTenant, chunk_ranges
from transforms.demo.layout import BLOCK_SIZE
from transforms.demo.rows import (
    ABSTRACTION_PROPERTIES,
    NODES,
    RELATIONSHIPS,
    approximate_counts,
    expected_counts,
    generate_rows,
    label_key,
    shared_node_ids,
)
from transforms.demo.spec import DemoTenantSpec

__all__ = [
    "ABSTRACTION_PROPERTIES", "BLOCK_SIZE", "INDEX_SPECS", "NODE_LABELS", "NODES",
    "RELATIONSHIPS", "RESOURCE_TYPES", "ROWS_PER_GROUP", "SHARED_LABELS", "DemoTenantSpec",
    "GenerateDemoTenant", "approximate_counts", "chunk_ranges", "expected_counts",
    "generate_rows", "label_key", "shared_node_ids",
]
