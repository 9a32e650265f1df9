"""The demo tenant as write rows: ``(NODES or RELATIONSHIPS, ((kind, shard), row))``,
in resource-index order, from the layout and the properties; exact counts of a spec."""

from __future__ import annotations

import collections
import functools
import itertools
import json
import random
from typing import Any, Dict, FrozenSet, Iterator, Optional, Tuple

from transforms.cypher import WriteKind, node_kind, relationship_kind
from transforms.demo.catalogue import (
    APPS,
    NODE_LABELS,
    OPTIONAL_TAG_KEYS,
    ORIGINAL_LABEL,
    RESOURCE_LABEL,
    SHARED_LABELS,
    SIX_MONTHS_S,
    TAG_VALUES,
    TYPES,
    hashed_guid,
    iso,
    json_strings,
    random_guid,
    region_id,
    tag_id,
)
from transforms.demo.layout import BLOCK_SIZE, block_plan, ResourceGroup, Slot, Tenant
from transforms.demo.properties import BUILDERS
from transforms.demo.spec import DemoTenantSpec


NODES = "nodes"
RELATIONSHIPS = "relationships"
#: The abstraction properties an Original does not carry (it has everything else).
ABSTRACTION_PROPERTIES = ("original_id", "original_name", "abstracted_id")
LAYER_ID = "default"
#: Measured averages (see ``expected_counts``), used only to size write batches.
NODES_PER_RESOURCE = 2.4
RELATIONSHIPS_PER_RESOURCE = 5.4

_RESOURCE_KIND = node_kind(RESOURCE_LABEL)
_ORIGINAL_KIND = node_kind(RESOURCE_LABEL, (ORIGINAL_LABEL,))
_NODE_KINDS = {label: node_kind(label) for label in NODE_LABELS}


_KeyedRow = Tuple[Tuple[WriteKind, int], Dict[str, Any]]
#: ``(NODES or RELATIONSHIPS, ((kind, shard), row))``.
_Row = Tuple[str, _KeyedRow]


@functools.lru_cache(maxsize=None)
def _rel_kind(rel_type: str, start_label: str, end_label: str) -> WriteKind:
    return relationship_kind(rel_type, start_label, end_label)


def _node(label: str, shard: int, row: Dict[str, Any]) -> _Row:
    return NODES, ((_NODE_KINDS[label], shard), row)


def _rel(rel_type: str, start_label: str, start: str, end_label: str, end: str, shard: int,
         props: Optional[Dict[str, Any]] = None) -> _Row:
    return RELATIONSHIPS, ((_rel_kind(rel_type, start_label, end_label), shard),
                           {"start": start, "end": end, "props": props or {}})


_FIRST_NAMES = ("Ada", "Ben", "Chen", "Dana", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Julia",
                "Kofi", "Lena", "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara")
_LAST_NAMES = ("Ahmed", "Berg", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen",
               "Ito", "Jensen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Olsen", "Patel")


def _tenant_rows(tenant: Tenant, shards: int) -> Iterator[_Row]:
    """The tenant-wide and shared nodes (emitted once, with resource index 0), round-robin
    over shards."""
    t = tenant.spec.tenant_id
    shard = itertools.cycle(range(shards))
    yield _node("Tenant", next(shard), {"id": t, "name": t, "tenant_id": t,
                                        "display_name": f"{t} (demo tenant)",
                                        "default_domain": f"{t}.onmicrosoft.com"})
    for guid, name in zip(tenant.subscriptions, tenant.subscription_names):
        subscription_id = f"/subscriptions/{guid}"
        yield _node("Subscription", next(shard), {"id": subscription_id, "name": name,
                                                  "subscription_id": guid, "tenant_id": t,
                                                  "state": "Enabled"})
        # One shard for all: they all lock the Tenant node.
        yield _rel("CONTAINS", "Tenant", t, "Subscription", subscription_id, 0)
    # Shared with every tenant: no tenant_id, and the same properties whoever writes them.
    for code, display in tenant.regions:
        yield _node("Region", next(shard), {"id": region_id(code), "name": code,
                                            "display_name": display})
    for key, values in TAG_VALUES.items():
        for value in values:
            yield _node("Tag", next(shard), {"id": tag_id(key, value), "key": key, "value": value})
    for number in range(tenant.users):
        first = _FIRST_NAMES[number % len(_FIRST_NAMES)]
        last = _LAST_NAMES[(number // len(_FIRST_NAMES)) % len(_LAST_NAMES)]
        login = f"{first}.{last}{number // (len(_FIRST_NAMES) * len(_LAST_NAMES)) or ''}".lower()
        yield _node("User", next(shard), {
            "id": tenant.user_id(number), "display_name": f"{first} {last}",
            "user_principal_name": f"{login}@{t}.onmicrosoft.com", "user_type": "Member",
            "tenant_id": t})
    for number in range(tenant.service_principals):
        app = APPS[number % len(APPS)]
        yield _node("ServicePrincipal", next(shard), {
            "id": tenant.service_principal_id(number), "app_id": hashed_guid(tenant.key, "app", number),
            "display_name": f"sp-{app}-deploy-{number:03d}",
            "service_principal_type": "Application", "tenant_id": t})
    for role_id, name, description in tenant.role_definitions:
        yield _node("RoleDefinition", next(shard), {
            "id": role_id, "role_name": name, "description": description,
            "role_type": "BuiltInRole", "tenant_id": t})


def _group_rows(tenant: Tenant, rg: ResourceGroup, shard: int) -> Iterator[_Row]:
    """A resource group, its managed identity and role assignments, and their links."""
    t = tenant.spec.tenant_id
    rng = random.Random(f"{tenant.key}\x1frg\x1f{rg.ordinal}")
    yield _node("ResourceGroup", shard, {
        "id": rg.id, "name": rg.name, "subscription_id": rg.subscription, "tenant_id": t,
        "location": rg.location, "tags": json_strings(rg.tags), "provisioning_state": "Succeeded"})
    yield _rel("CONTAINS", "Subscription", f"/subscriptions/{rg.subscription}", "ResourceGroup",
               rg.id, shard)
    yield _rel("LOCATED_IN", "ResourceGroup", rg.id, "Region", region_id(rg.location), shard)
    for key, value in rg.tags.items():
        yield _rel("TAGGED_WITH", "ResourceGroup", rg.id, "Tag", tag_id(key, value), shard)
    principals = [
        ("User", tenant.user_id(rng.randrange(tenant.users))),
        ("ServicePrincipal", tenant.service_principal_id(rng.randrange(tenant.service_principals))),
    ]
    if rg.identity_id is not None:
        yield _node("ManagedIdentity", shard, {
            "id": rg.identity_id, "name": rg.identity_id.rsplit("/", 1)[1],
            "principal_id": random_guid(rng), "client_id": random_guid(rng),
            "identity_type": "UserAssigned", "resource_group": rg.name, "location": rg.location,
            "tenant_id": t})
        principals.append(("ManagedIdentity", rg.identity_id))
    for label, principal in rng.sample(principals, rng.randint(1, 2)):
        role_id = rng.choice(tenant.role_definitions)[0]
        assignment = (f"{rg.id}/providers/Microsoft.Authorization/roleAssignments/"
                      f"{random_guid(rng)}")
        yield _node("RoleAssignment", shard, {
            "id": assignment, "principal_id": principal, "principal_type": label,
            "role_definition_id": role_id, "scope": rg.id, "tenant_id": t})
        yield _rel("ASSIGNED_TO", "RoleAssignment", assignment, label, principal, shard)
        yield _rel("HAS_ROLE", "RoleAssignment", assignment, "RoleDefinition", role_id, shard)


_SECRET_NAMES = ("db-connection-string", "storage-key", "api-key", "jwt-signing-key",
                 "service-bus-connection", "smtp-password")


def _resource_rows(tenant: Tenant, slot: Slot, shard: int, end: int) -> Iterator[_Row]:
    """One abstracted resource, its Original, and every relationship it owns."""
    rg, info, t = slot.rg, TYPES[slot.kind], tenant.spec.tenant_id
    rng = random.Random(f"{tenant.key}\x1f{slot.index}")
    properties, extra, detail = BUILDERS[slot.kind](slot, rng, end)
    tags = {}
    if rng.random() < 0.35:
        for key in rng.sample(("environment", "application", "costCenter"), rng.randint(1, 2)):
            tags[key] = rg.tags[key]
        if rng.random() < 0.2:
            key = rng.choice(OPTIONAL_TAG_KEYS)
            tags[key] = rng.choice(TAG_VALUES[key])
    system_identity = None
    if slot.kind in ("site", "vm") and rng.random() < (0.7 if slot.kind == "site" else 0.2):
        system_identity = random_guid(rng)
        extra["identity"] = json_strings({"type": "SystemAssigned", "principalId": system_identity,
                                           "tenantId": tenant.directory_id})
    elif slot.uses_rg_identity:
        extra["identity"] = ('{"type": "UserAssigned", "userAssignedIdentities": {"'
                             + rg.identity_id + '": {}}}')
    common = {
        "type": info.arm_type, "location": rg.location, "resource_group": rg.name,
        "subscription_id": rg.subscription, "tenant_id": t, "tags": json_strings(tags),
        "properties": json.dumps(properties), "scan_id": tenant.scan_id, "layer_id": LAYER_ID,
        "updated_at": iso(tenant.epoch - rng.randrange(SIX_MONTHS_S)),
        "llm_description": f"{info.noun} {slot.name} in resource group {rg.name} ({rg.location}) "
                           f"for the {rg.app} {rg.env} workload; {detail}.",
        **extra,
    }
    yield NODES, ((_RESOURCE_KIND, shard), {
        "id": slot.id, "name": slot.name, **common, "original_id": slot.original_id,
        "original_name": slot.original_name, "abstracted_id": slot.id})
    yield NODES, ((_ORIGINAL_KIND, shard),
                  {"id": slot.original_id, "name": slot.original_name, **common})
    yield _rel("SCAN_SOURCE_NODE", RESOURCE_LABEL, slot.id, RESOURCE_LABEL, slot.original_id, shard)
    yield _rel("CONTAINS", "ResourceGroup", rg.id, RESOURCE_LABEL, slot.id, shard)
    yield _rel("LOCATED_IN", RESOURCE_LABEL, slot.id, "Region", region_id(rg.location), shard)
    for key, value in tags.items():
        yield _rel("TAGGED_WITH", RESOURCE_LABEL, slot.id, "Tag", tag_id(key, value), shard)
    for link in slot.links:
        start, end_id = (slot.id, link.target.id) if link.outgoing else (link.target.id, slot.id)
        yield _rel(link.rel_type, RESOURCE_LABEL, start, RESOURCE_LABEL, end_id, shard, link.props)
    if system_identity is not None:
        yield _node("ManagedIdentity", shard, {
            "id": system_identity, "name": slot.name, "identity_type": "SystemAssigned",
            "resource_id": slot.id, "tenant_id": t})
    identity = system_identity if system_identity is not None else (
        rg.identity_id if slot.uses_rg_identity else None)
    if identity is not None:
        yield _rel("USES_IDENTITY", RESOURCE_LABEL, slot.id, "ManagedIdentity", identity, shard)
    if slot.kind == "vault":
        for secret in rng.sample(_SECRET_NAMES, rng.randint(1, 4)):
            secret_id = f"{slot.original_id}/secrets/{secret}"
            yield _node("KeyVaultSecret", shard, {
                "id": secret_id, "name": secret, "vault_id": slot.id, "enabled": True,
                "content_type": "text/plain", "tenant_id": t})
            yield _rel("STORES_SECRET", RESOURCE_LABEL, slot.id, "KeyVaultSecret", secret_id, shard)
    creator = rng.random()
    if creator < 0.16:
        created = tenant.epoch - SIX_MONTHS_S - rng.randrange(SIX_MONTHS_S)
        created_at = {"created_at": iso(created)}
        if creator < 0.08:
            yield _rel("CREATED_BY", RESOURCE_LABEL, slot.id, "User",
                       tenant.user_id(rng.randrange(tenant.users)), shard, created_at)
        else:
            yield _rel("CREATED_BY", RESOURCE_LABEL, slot.id, "ServicePrincipal",
                       tenant.service_principal_id(rng.randrange(tenant.service_principals)),
                       shard, created_at)


def _shard(block: int, rg: ResourceGroup, shards: int) -> int:
    """Each block is cut into ``shards`` equal stretches, rotated by block; a group goes to
    the stretch its middle lies in. Shards get near-equal numbers of resources whatever
    the group sizes."""
    return (block + rg.block_midpoint * shards // BLOCK_SIZE) % shards


def chunk_rows(tenant: Tenant, start: int, end: int, shards: int) -> Iterator[_Row]:
    """Every row owned by resource indices ``[start, end)``, in index order."""
    resources = tenant.spec.resources
    if start == 0 and end > 0:
        yield from _tenant_rows(tenant, shards)
    for block in range(start // BLOCK_SIZE, (end - 1) // BLOCK_SIZE + 1 if end > start else 0):
        for rg, slots in block_plan(tenant, block):
            if rg.first_index >= end:
                break
            if rg.first_index + rg.size <= start:
                continue
            shard = _shard(block, rg, shards)
            if rg.first_index >= start:
                yield from _group_rows(tenant, rg, shard)
            for slot in slots:
                if start <= slot.index < end:
                    yield from _resource_rows(tenant, slot, shard, resources)


def check_range(spec: DemoTenantSpec, start: int, end: int, shards: int) -> None:
    if not 0 <= start <= end <= spec.resources:
        raise ValueError(f"need 0 <= start <= end <= spec.resources ({spec.resources}), "
                         f"got start={start}, end={end}")
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be a positive integer, got {shards!r}")


def generate_rows(spec: DemoTenantSpec, start: int = 0, end: Optional[int] = None,
                  shards: int = 1) -> Iterator[_Row]:
    """The rows of resource indices ``[start, end)`` (default: the whole tenant), in Python.

    Yields ``(NODES or RELATIONSHIPS, ((kind, shard), row))``: what ``GenerateDemoTenant``
    emits, in index order, so that concatenating consecutive ranges gives exactly the
    rows of the whole range. Memory stays bounded by one block plan.
    """
    end = spec.resources if end is None else end
    check_range(spec, start, end, shards)
    return chunk_rows(Tenant(spec), start, end, shards)


def label_key(kind: WriteKind) -> str:
    """``"Resource"``, ``"Resource:Original"``, ``"Tag"`` ...: a node kind's labels."""
    return ":".join((kind[1], *kind[2]))


def shared_node_ids(spec: DemoTenantSpec) -> Dict[str, FrozenSet[str]]:
    """``{label: ids}`` of the shared nodes (``SHARED_LABELS``) that ``spec``'s rows write.

    They carry no ``tenant_id`` and their ids do not depend on the tenant, so a database
    holding several demo tenants holds one node per id in the union of theirs.
    """
    ids: Dict[str, set] = {label: set() for label in SHARED_LABELS}
    for _, ((kind, _), row) in _tenant_rows(Tenant(spec), 1):
        if kind[1] in ids:
            ids[kind[1]].add(row["id"])
    return {label: frozenset(found) for label, found in ids.items()}


def expected_counts(spec: DemoTenantSpec) -> Dict[str, Dict[str, int]]:
    """Exact counts of a spec's tenant, by generating it (≈ 0.1 s per 1,000 resources).

    ``{"nodes": {label key: n}, "shared_nodes": {label: n}, "relationships": {type: n},
    "resources_by_type": {type: n}}``: ``nodes`` are the tenant's own nodes (they carry
    its ``tenant_id``), by ``label_key(kind)``; ``shared_nodes`` the shared ones its rows
    write (see ``shared_node_ids``: other tenants may write the same); every relationship
    starts at a node of the tenant; ``resources_by_type`` counts the abstracted resources
    by ARM type.
    """
    nodes: collections.Counter = collections.Counter()
    shared: collections.Counter = collections.Counter()
    relationships: collections.Counter = collections.Counter()
    types: collections.Counter = collections.Counter()
    for tag, ((kind, _), row) in generate_rows(spec):
        if tag == NODES:
            (shared if kind[1] in SHARED_LABELS else nodes)[label_key(kind)] += 1
            if kind == _RESOURCE_KIND:
                types[row["type"]] += 1
        else:
            relationships[kind[1]] += 1
    return {"nodes": dict(nodes), "shared_nodes": dict(shared),
            "relationships": dict(relationships), "resources_by_type": dict(types)}


def approximate_counts(spec: DemoTenantSpec) -> Tuple[int, int]:
    """(nodes, relationships) within a few percent, without generating: for sizing batches."""
    return (round(spec.resources * NODES_PER_RESOURCE) + 300,
            round(spec.resources * RELATIONSHIPS_PER_RESOURCE) + 10)
