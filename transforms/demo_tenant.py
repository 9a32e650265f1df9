"""Generate a realistic demo Azure tenant graph, of any size, deterministically.

The demo tenant stands in for a real scanned tenant (the model of ``docs/DOMAIN.md``)
wherever one is needed: ``run_local.sh``, the tests, the benchmarks. Its rows are
exactly what ``transforms.neo4j_write.WriteGraph`` takes, so it is loaded through the
project's own sink.

What a tenant contains (``expected_counts`` gives exact numbers for a spec):

* Shared nodes, all carrying ``tenant_id``: ``Tenant``, ``Subscription``,
  ``ResourceGroup``, ``Region``, ``Tag``, ``User``, ``ServicePrincipal``,
  ``ManagedIdentity``, ``RoleDefinition``, ``RoleAssignment``, ``KeyVaultSecret``. Their
  ids are ARM-style and scoped by the tenant's own subscription or GUIDs, so two demo
  tenants never share (and never overwrite) a node.
* ``spec.resources`` abstracted ``:Resource`` nodes in resource groups of 5 to 40, each
  built from one workload (network hub, VMs, web apps, SQL, mixed): VNets and subnets,
  NSGs, public IPs, NICs, managed disks, VMs, storage accounts, key vaults, App Service
  plans and web apps, Application Insights, SQL servers and databases, private
  endpoints, Log Analytics workspaces. Properties differ by type; ``properties`` is the
  ARM JSON shape of the type (200 to ~5,000 characters).
* One ``:Resource:Original`` twin per abstracted resource (its real-looking id and name,
  without the abstraction properties), linked ``(abstracted)-[:SCAN_SOURCE_NODE]->(original)``.
* About 1 resource↔resource relationship per resource, nearly all inside a resource
  group (``CONTAINS``, ``USES_SUBNET``, ``SECURED_BY``, ``CONNECTED_TO``,
  ``DEPENDS_ON``, ``USES``, ``USES_NETWORK``, ``CONNECTED_TO_PE``, ``MONITORS``,
  ``LOGS_TO``, ``SENDS_DIAG_TO``), and 2 to 3 to shared nodes (the resource group's
  ``CONTAINS``, ``LOCATED_IN``, ``TAGGED_WITH``, ``USES_IDENTITY``, ``CREATED_BY``,
  ``STORES_SECRET``).

How it stays deterministic and bounded:

* The layout is cut into blocks of ``BLOCK_SIZE`` resource indices; a block is split
  into resource groups and filled with workloads by a random generator seeded with
  (tenant, seed, block), and each resource's values come from one seeded with
  (tenant, seed, index). Nothing depends on how the index range is chunked, nor on
  ``spec.resources`` except where the tenant ends, so the same spec always yields the
  same rows, in the same order when the chunks are concatenated.
* A relationship is always emitted with its later resource and points back to earlier
  ones in the same resource group, so the truncated last block never leaves a
  dangling end. Every node is emitted exactly once (tenant-wide nodes with index 0, a
  resource group's nodes with its first resource): ``MERGE`` without a uniqueness
  constraint could otherwise create duplicates when two batches run concurrently.
* ``GenerateDemoTenant`` creates only small ``(start, end)`` chunk descriptors with
  ``beam.Create`` (FACTS.md: ~250 µs per created element) and generates the rows in a
  DoFn, one block plan (``BLOCK_SIZE`` slots) in memory at a time.

Rows are keyed ``(write kind, shard)`` and leave the transform in groups of up to
``ROWS_PER_GROUP`` rows of one key (``WriteGraph`` takes row groups: Beam's
per-element costs are then paid per group). The shard of everything that belongs to a
resource group is derived from that group, so relationship batches of different shards
touch disjoint resources (the sink writes shards in parallel); tenant-wide nodes go
round-robin.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import functools
import hashlib
import itertools
import json
import random
import re
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.cypher import WriteKind, is_node_kind, node_kind, relationship_kind
from transforms.neo4j_write import METRICS_NAMESPACE

NODES = "nodes"
RELATIONSHIPS = "relationships"
#: Resource indices per layout block; resource groups never span two blocks.
BLOCK_SIZE = 100
DEFAULT_CHUNK_SIZE = 1_000
#: Rows per emitted group: one Beam element each (what ``WriteGraph`` calls a row group).
ROWS_PER_GROUP = 100
MAX_RESOURCES = 100_000_000
MAX_SUBSCRIPTIONS = 1_000
_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
#: The abstraction properties an Original does not carry (it has everything else).
ABSTRACTION_PROPERTIES = ("original_id", "original_name", "abstracted_id")
LAYER_ID = "default"
#: Measured averages (see ``expected_counts``), used only to size write batches.
NODES_PER_RESOURCE = 2.4
RELATIONSHIPS_PER_RESOURCE = 5.4

RESOURCE_LABEL = "Resource"
ORIGINAL_LABEL = "Original"
#: Every label the demo tenant merges nodes on (each needs an index on ``id``).
NODE_LABELS = (
    RESOURCE_LABEL, "Tenant", "Subscription", "ResourceGroup", "Region", "Tag", "User",
    "ServicePrincipal", "ManagedIdentity", "RoleDefinition", "RoleAssignment", "KeyVaultSecret",
)
INDEX_SPECS = tuple((label, ("id",)) for label in NODE_LABELS)

_RESOURCE_KIND = node_kind(RESOURCE_LABEL)
_ORIGINAL_KIND = node_kind(RESOURCE_LABEL, (ORIGINAL_LABEL,))
_NODE_KINDS = {label: node_kind(label) for label in NODE_LABELS}


@dataclasses.dataclass(frozen=True)
class DemoTenantSpec:
    """Which demo tenant: its id, how many abstracted resources, the seed, subscriptions.

    ``tenant_id`` is written into every node's ``tenant_id`` and into the ids of the
    tenant-wide nodes, so it is restricted to letters, digits, ``.``, ``_`` and ``-``.
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


# --------------------------------------------------------------------------- catalogue

@dataclasses.dataclass(frozen=True)
class _TypeInfo:
    arm_type: str
    prefix: str  # name prefix, as in Azure's naming guidance
    noun: str  # for llm_description


_TYPES: Dict[str, _TypeInfo] = {
    "workspace": _TypeInfo("Microsoft.OperationalInsights/workspaces", "log",
                           "Log Analytics workspace"),
    "vnet": _TypeInfo("Microsoft.Network/virtualNetworks", "vnet", "Virtual network"),
    "subnet": _TypeInfo("Microsoft.Network/virtualNetworks/subnets", "snet", "Subnet"),
    "nsg": _TypeInfo("Microsoft.Network/networkSecurityGroups", "nsg", "Network security group"),
    "pip": _TypeInfo("Microsoft.Network/publicIPAddresses", "pip", "Public IP address"),
    "nic": _TypeInfo("Microsoft.Network/networkInterfaces", "nic", "Network interface"),
    "disk": _TypeInfo("Microsoft.Compute/disks", "disk", "Managed disk"),
    "vm": _TypeInfo("Microsoft.Compute/virtualMachines", "vm", "Virtual machine"),
    "storage": _TypeInfo("Microsoft.Storage/storageAccounts", "st", "Storage account"),
    "vault": _TypeInfo("Microsoft.KeyVault/vaults", "kv", "Key vault"),
    "plan": _TypeInfo("Microsoft.Web/serverFarms", "asp", "App Service plan"),
    "site": _TypeInfo("Microsoft.Web/sites", "app", "Web app"),
    "insights": _TypeInfo("Microsoft.Insights/components", "appi",
                          "Application Insights component"),
    "sqlserver": _TypeInfo("Microsoft.Sql/servers", "sql", "Azure SQL logical server"),
    "sqldb": _TypeInfo("Microsoft.Sql/servers/databases", "sqldb", "Azure SQL database"),
    "endpoint": _TypeInfo("Microsoft.Network/privateEndpoints", "pe", "Private endpoint"),
}
#: Child types: their ARM id nests under the parent's (``.../virtualNetworks/v/subnets/s``).
_CHILD_SEGMENT = {"subnet": "subnets", "sqldb": "databases"}
#: The ARM resource types this generator produces.
RESOURCE_TYPES = tuple(info.arm_type for info in _TYPES.values())

_REGIONS = (
    ("eastus", "East US"), ("eastus2", "East US 2"), ("westus2", "West US 2"),
    ("centralus", "Central US"), ("northeurope", "North Europe"), ("westeurope", "West Europe"),
    ("uksouth", "UK South"), ("swedencentral", "Sweden Central"),
    ("southeastasia", "Southeast Asia"), ("australiaeast", "Australia East"),
)
_APPS = ("payments", "orders", "crm", "billing", "portal", "search", "hr", "analytics",
         "catalog", "identity", "reports", "iot")
_ENVS = ("prod", "prod", "staging", "dev", "test")
_TAG_VALUES = {
    "environment": ("prod", "staging", "dev", "test"),
    "application": _APPS,
    "costCenter": ("CC1001", "CC1002", "CC2040", "CC3100", "CC4200", "CC5150"),
    "owner": ("platform-team", "data-team", "web-team", "security-team", "finance-it", "ml-team"),
    "managedBy": ("terraform", "bicep", "portal", "pipeline"),
    "dataClassification": ("public", "internal", "confidential"),
}
_OPTIONAL_TAG_KEYS = ("owner", "managedBy", "dataClassification")
#: Built-in roles: (role definition GUID, name, description).
_ROLE_DEFINITIONS = (
    ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner",
     "Grants full access to manage all resources."),
    ("b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor",
     "Grants full access to manage all resources, but does not allow you to assign roles."),
    ("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader",
     "View all resources, but does not allow you to make any changes."),
    ("ba92f5b4-2d11-453d-a403-e96b0029c9fe", "Storage Blob Data Contributor",
     "Read, write, and delete Azure Storage containers and blobs."),
    ("4633458b-17de-408a-b874-0445c86b69e6", "Key Vault Secrets User",
     "Read secret contents."),
    ("9980e02c-c2be-4d73-94e8-173b1dc7cf3c", "Virtual Machine Contributor",
     "Create and manage virtual machines."),
    ("de139f84-1756-47ae-9be6-808fbbe84772", "Website Contributor",
     "Manage websites, but not the web plans to which they are connected."),
    ("6d8ee4ec-f05a-4a1d-8b00-a9b17e38b437", "SQL Server Contributor",
     "Manage SQL servers and databases, but not access to them."),
)
_WORKLOADS = ("network", "compute", "web", "data", "mixed")
_WORKLOAD_WEIGHTS = (1, 4, 3, 2, 3)
_RG_SIZES = (5, 6, 8, 10, 12, 15, 18, 20, 25, 30, 40)
_VM_SIZES = ("Standard_B2s", "Standard_D2s_v5", "Standard_D4s_v5", "Standard_D8s_v5",
             "Standard_E4s_v5", "Standard_F4s_v2")
_ZONES = '["1", "2", "3"]'
_EPOCH_2025 = 1_735_689_600  # 2025-01-01T00:00:00Z
_SIX_MONTHS_S = 182 * 86_400
_ARM_IMAGES = (
    ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2", "Linux"),
    ("RedHat", "RHEL", "9-lvm-gen2", "Linux"),
    ("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-azure-edition", "Windows"),
)


def _format_guid(bits: int) -> str:
    """128 random bits as a version-4 GUID (by hand: 4x cheaper than ``uuid.UUID``)."""
    h = f"{(bits & ~(0xC << 60)) | (0x8 << 60):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


def _guid(*parts: object) -> str:
    """A GUID that is a hash of ``parts``."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=16).digest()
    return _format_guid(int.from_bytes(digest, "big"))


def _random_guid(rng: random.Random) -> str:
    return _format_guid(rng.getrandbits(128))


@functools.lru_cache(maxsize=4096)
def _json(value: Tuple[Tuple[str, Any], ...]) -> str:
    """JSON of a small flat mapping given as items; the few distinct ones are cached."""
    return json.dumps(dict(value))


def _json_strings(mapping: Dict[str, str]) -> str:
    """JSON of a flat str→str mapping whose strings need no escaping (tags)."""
    return "{" + ", ".join(f'"{key}": "{value}"' for key, value in mapping.items()) + "}"


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


# --------------------------------------------------------------------------- the tenant

class _Tenant:
    """Tenant-wide values: computed once per spec, small (O(subscriptions))."""

    def __init__(self, spec: DemoTenantSpec) -> None:
        self.spec = spec
        self.key = f"{spec.tenant_id}\x1f{spec.seed}"
        rng = random.Random(f"demo-tenant\x1f{self.key}")
        self.subscriptions = [_guid(self.key, "subscription", i) for i in range(spec.subscriptions)]
        self.subscription_names = [
            f"{spec.tenant_id}-{name}" for name in
            (["production", "non-production", "shared-services", "sandbox"]
             + [f"workload-{i:03d}" for i in range(4, spec.subscriptions)])[:spec.subscriptions]]
        self.subscription_weights = [1.0 / (i + 1) for i in range(spec.subscriptions)]
        scope = f"/subscriptions/{self.subscriptions[0]}"
        regions = rng.sample(_REGIONS, 4)
        self.regions = [(code, display, f"{scope}/locations/{code}") for code, display in regions]
        self.region_ids = {code: region_id for code, _, region_id in self.regions}
        self.tag_ids = {
            (key, value): f"{scope}/tagNames/{key}/tagValues/{value}"
            for key, values in _TAG_VALUES.items() for value in values
        }
        self.role_definitions = [
            (f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}", name, text)
            for guid, name, text in _ROLE_DEFINITIONS
        ]
        self.users = min(5_000, max(3, spec.resources // 50))
        self.service_principals = min(1_000, max(2, spec.resources // 250))
        self.scan_id = f"scan-{_guid(self.key, 'scan')}"
        self.directory_id = _guid(self.key, "directory")  # the Entra tenant GUID
        self.epoch = _EPOCH_2025 + rng.randrange(0, 90 * 86_400)
        self.name_mask = rng.getrandbits(32)

    @functools.lru_cache(maxsize=8192)
    def user_id(self, number: int) -> str:
        return _guid(self.key, "user", number)

    @functools.lru_cache(maxsize=2048)
    def service_principal_id(self, number: int) -> str:
        return _guid(self.key, "service-principal", number)

    def resource_name_hash(self, index: int) -> str:
        """8 hex digits, distinct for every index below 2**32 (a bijection of 32-bit ints)."""
        return f"{((index * 0x9E3779B1) & 0xFFFFFFFF) ^ self.name_mask:08x}"


# --------------------------------------------------------------------------- block plans

@dataclasses.dataclass(eq=False)
class _ResourceGroup:
    ordinal: int
    first_index: int
    size: int
    name: str
    id: str
    subscription: str
    location: str
    app: str
    env: str
    workload: str
    tags: Dict[str, str]
    block_midpoint: int  # where its middle lies in its block: decides its shard
    identity_id: Optional[str]  # the user-assigned managed identity, if any
    directory_id: str  # the tenant's Entra GUID (ARM's ``tenantId``)


@dataclasses.dataclass(eq=False)
class _Link:
    rel_type: str
    target: "_Slot"
    outgoing: bool  # True: (slot)-[rel]->(target), False: (target)-[rel]->(slot)
    props: Dict[str, Any]


@dataclasses.dataclass(eq=False)  # compared by identity: slots link to each other
class _Slot:
    index: int
    kind: str
    rg: _ResourceGroup
    number: int  # position in its resource group
    name: str = ""
    original_name: str = ""
    id: str = ""
    original_id: str = ""
    parent: Optional["_Slot"] = None
    links: List[_Link] = dataclasses.field(default_factory=list)
    referrers: List["_Slot"] = dataclasses.field(default_factory=list)
    uses_rg_identity: bool = False

    def targets(self, kind: str) -> List["_Slot"]:
        return [link.target for link in self.links if link.outgoing and link.target.kind == kind]


class _Full(Exception):
    """The resource group has no slot left: the workload stops there."""


class _GroupBuilder:
    """Adds slots to one resource group; every link points to an earlier slot."""

    def __init__(self, tenant: _Tenant, rg: _ResourceGroup, rng: random.Random) -> None:
        self.tenant = tenant
        self.rg = rg
        self.rng = rng
        self.slots: List[_Slot] = []
        self.first: Dict[str, _Slot] = {}

    def add(self, kind: str, parent: Optional[_Slot] = None) -> _Slot:
        if len(self.slots) == self.rg.size:
            raise _Full()
        rg, info = self.rg, _TYPES[kind]
        number = len(self.slots)
        slot = _Slot(index=rg.first_index + number, kind=kind, rg=rg, number=number)
        slot.name = f"{info.prefix}-{self.tenant.resource_name_hash(slot.index)}"
        if kind == "storage":  # 3-24 lowercase letters and digits
            slot.name = slot.name.replace("-", "")
            slot.original_name = f"st{rg.app}{rg.env}{slot.number:03d}"[:24]
        else:
            slot.original_name = f"{info.prefix}-{rg.app}-{rg.env}-{slot.number:03d}"
        if parent is None:
            suffix = f"providers/{info.arm_type}/"
            slot.id = f"{rg.id}/{suffix}{slot.name}"
            slot.original_id = f"{rg.id}/{suffix}{slot.original_name}"
        else:
            segment = _CHILD_SEGMENT[kind]
            slot.id = f"{parent.id}/{segment}/{slot.name}"
            slot.original_id = f"{parent.original_id}/{segment}/{slot.original_name}"
            slot.parent = parent
        self.slots.append(slot)
        self.first.setdefault(kind, slot)
        return slot

    def link(self, source: _Slot, rel_type: str, target: Optional[_Slot],
             props: Optional[Dict[str, Any]] = None, outgoing: bool = True) -> None:
        """Record ``(source)-[rel_type]->(target)`` (reversed if not ``outgoing``)."""
        if target is not None:
            source.links.append(_Link(rel_type, target, outgoing, props or {}))
            target.referrers.append(source)

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def diagnostics(self, source: _Slot, probability: float) -> None:
        workspace = self.first.get("workspace")
        if workspace is not None and self.chance(probability):
            self.link(source, "SENDS_DIAG_TO", workspace,
                      {"categories": "allLogs", "retention_days": self.rng.choice((30, 90, 365))})

    # The stacks: small sets of resources that belong together.

    def network(self, subnets: int) -> Tuple[_Slot, List[_Slot]]:
        vnet = self.add("vnet")
        nsg = self.add("nsg")
        self.diagnostics(nsg, 0.5)
        created = []
        for _ in range(subnets):
            subnet = self.add("subnet", parent=vnet)
            self.link(subnet, "CONTAINS", vnet, outgoing=False)
            if self.chance(0.8):
                self.link(subnet, "SECURED_BY", nsg)
            created.append(subnet)
        return vnet, created

    def vm(self, subnets: List[_Slot]) -> None:
        pip = self.add("pip") if self.chance(0.3) else None
        nic = self.add("nic")
        self.link(nic, "USES_SUBNET", self.rng.choice(subnets) if subnets else None,
                  {"private_ip_allocation_method": self.rng.choice(("Dynamic", "Static"))})
        self.link(nic, "CONNECTED_TO", pip, {"ip_configuration": "ipconfig1"})
        if self.chance(0.15):
            self.link(nic, "SECURED_BY", self.first.get("nsg"))
        disks = [self.add("disk")]
        if self.chance(0.4):
            disks.append(self.add("disk"))
        vm = self.add("vm")
        self.link(vm, "CONNECTED_TO", nic, {"primary": True})
        for lun, disk in enumerate(disks):
            props = {"disk_role": "os"} if lun == 0 else {"disk_role": "data", "lun": lun - 1}
            self.link(vm, "DEPENDS_ON", disk, props)
        self.diagnostics(vm, 0.3)
        vm.uses_rg_identity = self.rg.identity_id is not None and self.chance(0.5)

    def web(self, plan: _Slot, subnets: List[_Slot]) -> None:
        site = self.add("site")
        self.link(site, "DEPENDS_ON", plan, {"kind": "server_farm"})
        if self.chance(0.4):
            self.link(site, "USES", self.first.get("vault"), {"purpose": "key_vault_references"})
        if self.chance(0.3):
            self.link(site, "USES", self.first.get("storage"), {"purpose": "content_share"})
        if subnets and self.chance(0.4):
            self.link(site, "USES_NETWORK", subnets[0], {"integration": "regional_vnet"})
        if self.chance(0.4):
            insights = self.add("insights")
            self.link(insights, "MONITORS", site)
            workspace = self.first.get("workspace")
            if workspace is not None and self.chance(0.7):
                self.link(insights, "LOGS_TO", workspace)

    def endpoint(self, target: _Slot, group_id: str, subnets: List[_Slot]) -> None:
        endpoint = self.add("endpoint")
        self.link(endpoint, "CONNECTED_TO_PE", target,
                  {"group_id": group_id, "connection_state": "Approved"})
        self.link(endpoint, "USES_SUBNET", subnets[-1])

    def sql(self, subnets: List[_Slot]) -> None:
        server = self.add("sqlserver")
        self.diagnostics(server, 0.4)
        for _ in range(self.rng.randint(1, 4)):
            database = self.add("sqldb", parent=server)
            self.link(database, "DEPENDS_ON", server)
        if subnets and self.chance(0.5):
            self.endpoint(server, "sqlServer", subnets)

    def storage(self, subnets: List[_Slot]) -> None:
        account = self.add("storage")
        self.diagnostics(account, 0.3)
        if subnets and self.chance(0.3):
            self.endpoint(account, "blob", subnets)

    def vault(self) -> None:
        vault = self.add("vault")
        self.diagnostics(vault, 0.6)

    def fill(self) -> None:
        """Lay out the workload until the group is full (``_Full`` ends it)."""
        workload, chance = self.rg.workload, self.chance
        if chance(0.6):
            self.add("workspace")
        if workload == "network":
            while True:
                _, subnets = self.network(self.rng.randint(2, 5))
                if chance(0.5):
                    self.add("pip")
        if workload == "compute":
            _, subnets = self.network(self.rng.randint(1, 3))
            if chance(0.5):
                self.storage([])
            if chance(0.4):
                self.vault()
            while True:
                self.vm(subnets)
        if workload == "web":
            subnets = self.network(1)[1] if chance(0.4) else []
            if chance(0.7):
                self.vault()
            if chance(0.6):
                self.storage(subnets)
            while True:
                plan = self.add("plan")
                for _ in range(self.rng.randint(1, 4)):
                    self.web(plan, subnets)
        if workload == "data":
            subnets = self.network(1)[1] if chance(0.6) else []
            if chance(0.7):
                self.vault()
            while True:
                if chance(0.7):
                    self.sql(subnets)
                else:
                    self.storage(subnets)
        _, subnets = self.network(self.rng.randint(1, 2))  # mixed
        plan = None
        while True:
            stack = self.rng.random()
            if stack < 0.45:
                self.vm(subnets)
            elif stack < 0.7:
                if plan is None or chance(0.3):
                    plan = self.add("plan")
                self.web(plan, subnets)
            elif stack < 0.8:
                self.sql(subnets)
            elif stack < 0.9:
                self.storage(subnets)
            else:
                self.vault()


def _group_sizes(rng: random.Random) -> List[int]:
    sizes, remaining = [], BLOCK_SIZE
    while remaining:
        size = min(rng.choice(_RG_SIZES), remaining)
        if remaining - size < _RG_SIZES[0]:
            size = remaining
        sizes.append(size)
        remaining -= size
    return sizes


def _block_plan(tenant: _Tenant, block: int) -> List[Tuple[_ResourceGroup, List[_Slot]]]:
    """The resource groups of one block and their slots (independent of the tenant size)."""
    rng = random.Random(f"{tenant.key}\x1fblock\x1f{block}")
    primary = tenant.regions[0][0]
    others = [code for code, _, _ in tenant.regions[1:]]
    groups = []
    first_index = block * BLOCK_SIZE
    for local, size in enumerate(_group_sizes(rng)):
        ordinal = block * BLOCK_SIZE + local  # unique; at most BLOCK_SIZE groups per block
        subscription = rng.choices(tenant.subscriptions, tenant.subscription_weights)[0]
        location = primary if rng.random() < 0.7 else rng.choice(others)
        app, env = rng.choice(_APPS), rng.choice(_ENVS)
        workload = rng.choices(_WORKLOADS, _WORKLOAD_WEIGHTS)[0]
        name = f"rg-{app}-{env}-{location}-{ordinal:06d}"
        rg_id = f"/subscriptions/{subscription}/resourceGroups/{name}"
        identity_id = None
        if workload != "network" and rng.random() < 0.5:
            identity_id = (f"{rg_id}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
                           f"id-{app}-{env}")
        rg = _ResourceGroup(
            ordinal=ordinal, first_index=first_index, size=size, name=name, id=rg_id,
            subscription=subscription, location=location, app=app, env=env, workload=workload,
            tags={"environment": "prod" if env == "prod" else env, "application": app,
                  "costCenter": rng.choice(_TAG_VALUES["costCenter"])},
            block_midpoint=first_index - block * BLOCK_SIZE + size // 2, identity_id=identity_id,
            directory_id=tenant.directory_id,
        )
        builder = _GroupBuilder(tenant, rg, rng)
        try:
            builder.fill()
        except _Full:
            pass
        groups.append((rg, builder.slots))
        first_index += size
    return groups


# --------------------------------------------------------------------------- properties

_Built = Tuple[Dict[str, Any], Dict[str, Any], str]  # (ARM properties, extra node props, detail)


def _ids(slots: Sequence[_Slot], end: int) -> List[Dict[str, str]]:
    return [{"id": slot.id} for slot in slots if slot.index < end]


def _workspace(slot: _Slot, rng: random.Random, end: int) -> _Built:
    retention = rng.choice((30, 90, 180))
    return ({
        "customerId": _random_guid(rng), "provisioningState": "Succeeded",
        "sku": {"name": "PerGB2018"}, "retentionInDays": retention,
        "features": {"enableLogAccessUsingOnlyResourcePermissions": True},
        "workspaceCapping": {"dailyQuotaGb": -1.0},
        "publicNetworkAccessForIngestion": "Enabled", "publicNetworkAccessForQuery": "Enabled",
    }, {}, f"retains logs for {retention} days")


def _vnet(slot: _Slot, rng: random.Random, end: int) -> _Built:
    octet = slot.index % 250
    subnets = [s for s in slot.referrers if s.kind == "subnet" and s.index < end]
    return ({
        "provisioningState": "Succeeded", "resourceGuid": _random_guid(rng),
        "addressSpace": {"addressPrefixes": [f"10.{octet}.0.0/16"]},
        "dhcpOptions": {"dnsServers": []},
        "subnets": [{"id": s.id, "name": s.name,
                     "properties": {"addressPrefix": f"10.{octet}.{n}.0/24"}}
                    for n, s in enumerate(subnets)],
        "virtualNetworkPeerings": [], "enableDdosProtection": False,
    }, {}, f"address space 10.{octet}.0.0/16 with {len(subnets)} subnets")


def _subnet(slot: _Slot, rng: random.Random, end: int) -> _Built:
    nsg = slot.targets("nsg")
    users = [s for s in slot.referrers if s.index < end]
    properties = {
        "provisioningState": "Succeeded",
        "addressPrefix": f"10.{slot.parent.index % 250}.{slot.number % 250}.0/24",
        "privateEndpointNetworkPolicies": "Disabled",
        "privateLinkServiceNetworkPolicies": "Enabled",
        "ipConfigurations": _ids([s for s in users if s.kind == "nic"], end),
        "serviceEndpoints": [{"service": "Microsoft.Storage", "locations": [slot.rg.location]}]
        if rng.random() < 0.3 else [],
        "delegations": [],
    }
    if nsg:
        properties["networkSecurityGroup"] = {"id": nsg[0].id}
    return properties, {}, f"in {slot.parent.name}"


_DEFAULT_RULES = (
    ("AllowVnetInBound", 65000, "Inbound", "Allow", "VirtualNetwork"),
    ("AllowAzureLoadBalancerInBound", 65001, "Inbound", "Allow", "AzureLoadBalancer"),
    ("DenyAllInBound", 65500, "Inbound", "Deny", "*"),
    ("AllowVnetOutBound", 65000, "Outbound", "Allow", "VirtualNetwork"),
    ("AllowInternetOutBound", 65001, "Outbound", "Allow", "*"),
    ("DenyAllOutBound", 65500, "Outbound", "Deny", "*"),
)
_PORTS = ("22", "80", "443", "1433", "3389", "5432", "6379", "8080", "8443", "9000-9100")


def _rule_properties(priority: int, direction: str, access: str, source: str,
                     port: str) -> Dict[str, Any]:
    return {
        "protocol": "Tcp" if port != "*" else "*", "sourcePortRange": "*",
        "destinationPortRange": port, "sourceAddressPrefix": source,
        "destinationAddressPrefix": "*", "access": access, "priority": priority,
        "direction": direction,
    }


#: The six rules every NSG has, in the short form (name and properties) of a scan.
_DEFAULT_RULES_JSON = [
    {"name": name, "properties": _rule_properties(priority, direction, access, source, "*")}
    for name, priority, direction, access, source in _DEFAULT_RULES
]


def _nsg(slot: _Slot, rng: random.Random, end: int) -> _Built:
    custom = []
    for n, port in enumerate(rng.sample(_PORTS, rng.randint(1, 6))):
        name = f"allow-{port.replace('-', '_')}-{n}"
        source = rng.choice(("VirtualNetwork", "Internet", "10.0.0.0/8", "AzureLoadBalancer"))
        properties = _rule_properties(100 + 10 * n, "Inbound", "Allow", source, port)
        properties["provisioningState"] = "Succeeded"
        custom.append({"name": name, "id": f"{slot.id}/securityRules/{name}",
                       "type": "Microsoft.Network/networkSecurityGroups/securityRules",
                       "properties": properties})
    users = [s for s in slot.referrers if s.index < end]
    return ({
        "provisioningState": "Succeeded", "resourceGuid": _random_guid(rng),
        "securityRules": custom, "defaultSecurityRules": _DEFAULT_RULES_JSON,
        "subnets": _ids([s for s in users if s.kind == "subnet"], end),
        "networkInterfaces": _ids([s for s in users if s.kind == "nic"], end),
    }, {}, f"{len(custom)} custom inbound rules")


def _pip(slot: _Slot, rng: random.Random, end: int) -> _Built:
    address = f"20.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    nics = [s for s in slot.referrers if s.index < end]
    properties = {
        "provisioningState": "Succeeded", "resourceGuid": _random_guid(rng),
        "ipAddress": address, "publicIPAddressVersion": "IPv4",
        "publicIPAllocationMethod": "Static", "idleTimeoutInMinutes": 4, "ipTags": [],
    }
    if nics:
        properties["ipConfiguration"] = {"id": f"{nics[0].id}/ipConfigurations/ipconfig1"}
    return (properties, {"sku": _json((("name", "Standard"), ("tier", "Regional"))),
                         "zones": _ZONES}, f"static address {address}")


def _nic(slot: _Slot, rng: random.Random, end: int) -> _Built:
    subnet, pip, nsg = slot.targets("subnet"), slot.targets("pip"), slot.targets("nsg")
    vms = [s for s in slot.referrers if s.kind == "vm" and s.index < end]
    network = subnet[0].parent.index % 250 if subnet else 0
    address = f"10.{network}.{slot.number % 250}.{4 + slot.index % 250}"
    configuration: Dict[str, Any] = {
        "privateIPAddress": address, "privateIPAllocationMethod": "Dynamic",
        "privateIPAddressVersion": "IPv4", "primary": True,
    }
    if subnet:
        configuration["subnet"] = {"id": subnet[0].id}
    if pip:
        configuration["publicIPAddress"] = {"id": pip[0].id}
    properties = {
        "provisioningState": "Succeeded", "resourceGuid": _random_guid(rng),
        "ipConfigurations": [{"name": "ipconfig1", "id": f"{slot.id}/ipConfigurations/ipconfig1",
                              "properties": configuration}],
        "dnsSettings": {"dnsServers": [], "appliedDnsServers": []},
        "enableAcceleratedNetworking": rng.random() < 0.6, "enableIPForwarding": False,
        "macAddress": "00-0D-3A-%02X-%02X-%02X" % tuple(rng.randrange(256) for _ in range(3)),
        "nicType": "Standard",
    }
    if nsg:
        properties["networkSecurityGroup"] = {"id": nsg[0].id}
    if vms:
        properties["virtualMachine"] = {"id": vms[0].id}
    return properties, {}, f"private address {address}"


def _disk(slot: _Slot, rng: random.Random, end: int) -> _Built:
    size = rng.choice((32, 64, 128, 256, 512, 1024))
    tier = rng.choice(("Premium_LRS", "StandardSSD_LRS", "Standard_LRS"))
    owners = [s for s in slot.referrers if s.index < end]
    properties = {
        "provisioningState": "Succeeded", "diskSizeGB": size, "diskSizeBytes": size * 2**30,
        "diskState": "Attached" if owners else "Unattached", "uniqueId": _random_guid(rng),
        "creationData": {"createOption": rng.choice(("FromImage", "Empty"))},
        "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
        "networkAccessPolicy": "AllowAll", "publicNetworkAccess": "Enabled",
        "timeCreated": _iso(slot.rg.ordinal * 3_600 + _EPOCH_2025 - _SIX_MONTHS_S),
    }
    extra = {"sku": _json((("name", tier), ("tier", tier.split("_")[0])))}
    if owners:
        extra["managed_by"] = owners[0].id
    return properties, extra, f"{size} GiB {tier}"


def _ssh_key(rng: random.Random) -> str:
    key = rng.getrandbits(2_800).to_bytes(350, "big")
    return "ssh-rsa " + base64.b64encode(key).decode("ascii")


def _vm(slot: _Slot, rng: random.Random, end: int) -> _Built:
    size = rng.choice(_VM_SIZES)
    publisher, offer, sku, os_type = rng.choice(_ARM_IMAGES)
    nics, disks = slot.targets("nic"), slot.targets("disk")
    os_profile: Dict[str, Any] = {"computerName": slot.original_name[:15],
                                  "adminUsername": "azureadmin", "secrets": [],
                                  "allowExtensionOperations": True}
    if os_type == "Linux":
        os_profile["linuxConfiguration"] = {
            "disablePasswordAuthentication": True, "provisionVMAgent": True,
            "ssh": {"publicKeys": [{"path": "/home/azureadmin/.ssh/authorized_keys",
                                    "keyData": _ssh_key(rng)}]},
            "patchSettings": {"patchMode": "ImageDefault", "assessmentMode": "ImageDefault"},
        }
    else:
        os_profile["windowsConfiguration"] = {
            "provisionVMAgent": True, "enableAutomaticUpdates": True,
            "patchSettings": {"patchMode": "AutomaticByOS", "assessmentMode": "ImageDefault"},
        }
    properties = {
        "vmId": _random_guid(rng), "provisioningState": "Succeeded",
        "hardwareProfile": {"vmSize": size},
        "storageProfile": {
            "imageReference": {"publisher": publisher, "offer": offer, "sku": sku,
                               "version": "latest"},
            "osDisk": {"osType": os_type, "name": disks[0].name if disks else "",
                       "createOption": "FromImage", "caching": "ReadWrite",
                       "deleteOption": "Delete",
                       "managedDisk": {"id": disks[0].id if disks else "",
                                       "storageAccountType": "Premium_LRS"}},
            "dataDisks": [{"lun": lun, "name": disk.name, "createOption": "Attach",
                           "caching": "ReadOnly", "managedDisk": {"id": disk.id}}
                          for lun, disk in enumerate(disks[1:])],
        },
        "osProfile": os_profile,
        "networkProfile": {"networkInterfaces": [
            {"id": nic.id, "properties": {"primary": True, "deleteOption": "Detach"}}
            for nic in nics]},
        "diagnosticsProfile": {"bootDiagnostics": {"enabled": True}},
        "securityProfile": {"securityType": "TrustedLaunch",
                            "uefiSettings": {"secureBootEnabled": True, "vTpmEnabled": True}},
        "timeCreated": _iso(slot.rg.ordinal * 3_600 + _EPOCH_2025 - _SIX_MONTHS_S),
    }
    return properties, {"zones": f'["{rng.choice("123")}"]'}, f"{os_type} {size} running {offer}"


def _storage(slot: _Slot, rng: random.Random, end: int) -> _Built:
    name = slot.name
    replication = rng.choice(("Standard_LRS", "Standard_GRS", "Standard_ZRS", "Standard_RAGRS"))
    endpoints = {service: f"https://{name}.{service}.core.windows.net/"
                 for service in ("blob", "queue", "table", "file", "dfs", "web")}
    return ({
        "provisioningState": "Succeeded", "accessTier": rng.choice(("Hot", "Cool")),
        "allowBlobPublicAccess": False, "minimumTlsVersion": "TLS1_2",
        "supportsHttpsTrafficOnly": True, "isHnsEnabled": rng.random() < 0.2,
        "networkAcls": {"bypass": "AzureServices", "defaultAction": rng.choice(("Allow", "Deny")),
                        "ipRules": [], "virtualNetworkRules": []},
        "encryption": {"keySource": "Microsoft.Storage",
                       "services": {"blob": {"enabled": True, "keyType": "Account"},
                                    "file": {"enabled": True, "keyType": "Account"}}},
        "primaryEndpoints": endpoints, "primaryLocation": slot.rg.location,
        "statusOfPrimary": "available",
    }, {"sku": _json((("name", replication), ("tier", "Standard"))), "kind": "StorageV2"},
        f"{replication} general-purpose v2 storage")


def _vault(slot: _Slot, rng: random.Random, end: int) -> _Built:
    directory = slot.rg.directory_id
    policies = [{
        "tenantId": directory, "objectId": _random_guid(rng),
        "permissions": {"keys": ["Get", "List"], "secrets": ["Get", "List", "Set"],
                        "certificates": ["Get"]},
    } for _ in range(rng.randint(0, 3))]
    return ({
        "provisioningState": "Succeeded", "tenantId": directory,
        "sku": {"family": "A", "name": "standard"}, "accessPolicies": policies,
        "enableRbacAuthorization": not policies, "enableSoftDelete": True,
        "softDeleteRetentionInDays": 90, "enablePurgeProtection": rng.random() < 0.5,
        "vaultUri": f"https://{slot.name}.vault.azure.net/", "publicNetworkAccess": "Enabled",
    }, {}, "RBAC-authorized" if not policies else f"{len(policies)} access policies")


def _plan(slot: _Slot, rng: random.Random, end: int) -> _Built:
    tier, name = rng.choice((("Basic", "B1"), ("Standard", "S1"), ("PremiumV3", "P1v3"),
                             ("PremiumV3", "P2v3")))
    sites = sum(1 for s in slot.referrers if s.index < end)
    linux = rng.random() < 0.6
    return ({
        "provisioningState": "Succeeded", "status": "Ready", "reserved": linux,
        "numberOfSites": sites, "maximumNumberOfWorkers": 30, "perSiteScaling": False,
        "zoneRedundant": False, "kind": "linux" if linux else "app",
    }, {"sku": _json((("name", name), ("tier", tier), ("capacity", rng.randint(1, 3)))),
        "kind": "linux" if linux else "app"}, f"{tier} {name} hosting {sites} apps")


def _site(slot: _Slot, rng: random.Random, end: int) -> _Built:
    plan = slot.targets("plan")
    runtime = rng.choice(("DOTNETCORE|8.0", "NODE|20-lts", "PYTHON|3.12", "JAVA|17-java17"))
    host = f"{slot.name}.azurewebsites.net"
    settings = [{"name": name, "value": value} for name, value in (
        ("WEBSITE_RUN_FROM_PACKAGE", "1"),
        ("APPLICATIONINSIGHTS_CONNECTION_STRING", "@Microsoft.KeyVault(SecretUri=...)"),
        ("ASPNETCORE_ENVIRONMENT", slot.rg.env), ("FEATURE_FLAGS", "search,checkout-v2"),
    )][:rng.randint(1, 4)]
    return ({
        "state": "Running", "enabled": True, "hostNames": [host], "defaultHostName": host,
        "enabledHostNames": [host, f"{slot.name}.scm.azurewebsites.net"],
        "serverFarmId": plan[0].id if plan else "", "httpsOnly": True,
        "clientAffinityEnabled": False,
        "siteConfig": {"linuxFxVersion": runtime, "alwaysOn": True, "http20Enabled": True,
                       "minTlsVersion": "1.2", "ftpsState": "Disabled", "appSettings": settings},
        "usageState": "Normal", "availabilityState": "Normal",
    }, {"kind": "app,linux"}, f"runs {runtime.replace('|', ' ')}")


def _insights(slot: _Slot, rng: random.Random, end: int) -> _Built:
    key = _random_guid(rng)
    return ({
        "ApplicationId": slot.name, "AppId": _random_guid(rng), "Application_Type": "web",
        "InstrumentationKey": key,
        "ConnectionString": f"InstrumentationKey={key};IngestionEndpoint="
                            f"https://{slot.rg.location}-0.in.applicationinsights.azure.com/",
        "RetentionInDays": 90, "IngestionMode": "LogAnalytics", "provisioningState": "Succeeded",
    }, {"kind": "web"}, "collects web telemetry")


def _sqlserver(slot: _Slot, rng: random.Random, end: int) -> _Built:
    return ({
        "administratorLogin": "sqladmin", "version": "12.0", "state": "Ready",
        "fullyQualifiedDomainName": f"{slot.name}.database.windows.net",
        "minimalTlsVersion": "1.2", "publicNetworkAccess": rng.choice(("Enabled", "Disabled")),
        "restrictOutboundNetworkAccess": "Disabled",
    }, {"kind": "v12.0"}, "SQL logical server v12.0")


def _sqldb(slot: _Slot, rng: random.Random, end: int) -> _Built:
    name, tier, capacity = rng.choice((("S0", "Standard", 10), ("S2", "Standard", 50),
                                       ("GP_Gen5_2", "GeneralPurpose", 2),
                                       ("BC_Gen5_4", "BusinessCritical", 4)))
    max_gb = rng.choice((32, 250, 500))
    return ({
        "collation": "SQL_Latin1_General_CP1_CI_AS", "maxSizeBytes": max_gb * 2**30,
        "status": "Online",
        "databaseId": _random_guid(rng), "currentServiceObjectiveName": name,
        "requestedServiceObjectiveName": name, "defaultSecondaryLocation": slot.rg.location,
        "catalogCollation": "SQL_Latin1_General_CP1_CI_AS", "zoneRedundant": False,
        "readScale": "Disabled", "currentBackupStorageRedundancy": "Geo", "isLedgerOn": False,
    }, {"sku": _json((("name", name), ("tier", tier), ("capacity", capacity))),
        "kind": "v12.0,user"},
        f"{tier} {name}, {max_gb} GB")


def _endpoint(slot: _Slot, rng: random.Random, end: int) -> _Built:
    target, subnet = slot.targets(slot.links[0].target.kind), slot.targets("subnet")
    group = slot.links[0].props["group_id"]
    return ({
        "provisioningState": "Succeeded",
        "subnet": {"id": subnet[0].id if subnet else ""},
        "privateLinkServiceConnections": [{
            "name": f"{slot.name}-{group}", "properties": {
                "privateLinkServiceId": target[0].id, "groupIds": [group],
                "privateLinkServiceConnectionState": {"status": "Approved",
                                                      "actionsRequired": "None"}}}],
        "customDnsConfigs": [], "networkInterfaces": [],
    }, {}, f"private link to {target[0].name} ({group})")


_BUILDERS: Dict[str, Callable[[_Slot, random.Random, int], _Built]] = {
    "workspace": _workspace, "vnet": _vnet, "subnet": _subnet, "nsg": _nsg, "pip": _pip,
    "nic": _nic, "disk": _disk, "vm": _vm, "storage": _storage, "vault": _vault, "plan": _plan,
    "site": _site, "insights": _insights, "sqlserver": _sqlserver, "sqldb": _sqldb,
    "endpoint": _endpoint,
}


# --------------------------------------------------------------------------- rows

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


def _tenant_rows(tenant: _Tenant, shards: int) -> Iterator[_Row]:
    """The tenant-wide nodes (emitted once, with resource index 0), round-robin over shards."""
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
    for code, display, region_id in tenant.regions:
        yield _node("Region", next(shard), {"id": region_id, "name": code, "display_name": display,
                                            "tenant_id": t})
    for (key, value), tag_id in tenant.tag_ids.items():
        yield _node("Tag", next(shard), {"id": tag_id, "key": key, "value": value, "tenant_id": t})
    for number in range(tenant.users):
        first = _FIRST_NAMES[number % len(_FIRST_NAMES)]
        last = _LAST_NAMES[(number // len(_FIRST_NAMES)) % len(_LAST_NAMES)]
        login = f"{first}.{last}{number // (len(_FIRST_NAMES) * len(_LAST_NAMES)) or ''}".lower()
        yield _node("User", next(shard), {
            "id": tenant.user_id(number), "display_name": f"{first} {last}",
            "user_principal_name": f"{login}@{t}.onmicrosoft.com", "user_type": "Member",
            "tenant_id": t})
    for number in range(tenant.service_principals):
        app = _APPS[number % len(_APPS)]
        yield _node("ServicePrincipal", next(shard), {
            "id": tenant.service_principal_id(number), "app_id": _guid(tenant.key, "app", number),
            "display_name": f"sp-{app}-deploy-{number:03d}",
            "service_principal_type": "Application", "tenant_id": t})
    for role_id, name, description in tenant.role_definitions:
        yield _node("RoleDefinition", next(shard), {
            "id": role_id, "role_name": name, "description": description,
            "role_type": "BuiltInRole", "tenant_id": t})


def _group_rows(tenant: _Tenant, rg: _ResourceGroup, shard: int) -> Iterator[_Row]:
    """A resource group, its managed identity and role assignments, and their links."""
    t = tenant.spec.tenant_id
    rng = random.Random(f"{tenant.key}\x1frg\x1f{rg.ordinal}")
    yield _node("ResourceGroup", shard, {
        "id": rg.id, "name": rg.name, "subscription_id": rg.subscription, "tenant_id": t,
        "location": rg.location, "tags": _json_strings(rg.tags), "provisioning_state": "Succeeded"})
    yield _rel("CONTAINS", "Subscription", f"/subscriptions/{rg.subscription}", "ResourceGroup",
               rg.id, shard)
    region = tenant.region_ids[rg.location]
    yield _rel("LOCATED_IN", "ResourceGroup", rg.id, "Region", region, shard)
    for key, value in rg.tags.items():
        yield _rel("TAGGED_WITH", "ResourceGroup", rg.id, "Tag", tenant.tag_ids[key, value], shard)
    principals = [
        ("User", tenant.user_id(rng.randrange(tenant.users))),
        ("ServicePrincipal", tenant.service_principal_id(rng.randrange(tenant.service_principals))),
    ]
    if rg.identity_id is not None:
        yield _node("ManagedIdentity", shard, {
            "id": rg.identity_id, "name": rg.identity_id.rsplit("/", 1)[1],
            "principal_id": _random_guid(rng), "client_id": _random_guid(rng),
            "identity_type": "UserAssigned", "resource_group": rg.name, "location": rg.location,
            "tenant_id": t})
        principals.append(("ManagedIdentity", rg.identity_id))
    for label, principal in rng.sample(principals, rng.randint(1, 2)):
        role_id = rng.choice(tenant.role_definitions)[0]
        assignment = (f"{rg.id}/providers/Microsoft.Authorization/roleAssignments/"
                      f"{_random_guid(rng)}")
        yield _node("RoleAssignment", shard, {
            "id": assignment, "principal_id": principal, "principal_type": label,
            "role_definition_id": role_id, "scope": rg.id, "tenant_id": t})
        yield _rel("ASSIGNED_TO", "RoleAssignment", assignment, label, principal, shard)
        yield _rel("HAS_ROLE", "RoleAssignment", assignment, "RoleDefinition", role_id, shard)


_SECRET_NAMES = ("db-connection-string", "storage-key", "api-key", "jwt-signing-key",
                 "service-bus-connection", "smtp-password")


def _resource_rows(tenant: _Tenant, slot: _Slot, shard: int, end: int) -> Iterator[_Row]:
    """One abstracted resource, its Original, and every relationship it owns."""
    rg, info, t = slot.rg, _TYPES[slot.kind], tenant.spec.tenant_id
    region = tenant.region_ids[rg.location]
    rng = random.Random(f"{tenant.key}\x1f{slot.index}")
    properties, extra, detail = _BUILDERS[slot.kind](slot, rng, end)
    tags = {}
    if rng.random() < 0.35:
        for key in rng.sample(("environment", "application", "costCenter"), rng.randint(1, 2)):
            tags[key] = rg.tags[key]
        if rng.random() < 0.2:
            key = rng.choice(_OPTIONAL_TAG_KEYS)
            tags[key] = rng.choice(_TAG_VALUES[key])
    system_identity = None
    if slot.kind in ("site", "vm") and rng.random() < (0.7 if slot.kind == "site" else 0.2):
        system_identity = _random_guid(rng)
        extra["identity"] = _json_strings({"type": "SystemAssigned", "principalId": system_identity,
                                           "tenantId": tenant.directory_id})
    elif slot.uses_rg_identity:
        extra["identity"] = ('{"type": "UserAssigned", "userAssignedIdentities": {"'
                             + rg.identity_id + '": {}}}')
    common = {
        "type": info.arm_type, "location": rg.location, "resource_group": rg.name,
        "subscription_id": rg.subscription, "tenant_id": t, "tags": _json_strings(tags),
        "properties": json.dumps(properties), "scan_id": tenant.scan_id, "layer_id": LAYER_ID,
        "updated_at": _iso(tenant.epoch - rng.randrange(_SIX_MONTHS_S)),
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
    yield _rel("LOCATED_IN", RESOURCE_LABEL, slot.id, "Region", region, shard)
    for key, value in tags.items():
        yield _rel("TAGGED_WITH", RESOURCE_LABEL, slot.id, "Tag", tenant.tag_ids[key, value], shard)
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
            secret_id = f"{slot.id}/secrets/{secret}"
            yield _node("KeyVaultSecret", shard, {
                "id": secret_id, "name": secret, "vault_id": slot.id, "enabled": True,
                "content_type": "text/plain", "tenant_id": t})
            yield _rel("STORES_SECRET", RESOURCE_LABEL, slot.id, "KeyVaultSecret", secret_id, shard)
    creator = rng.random()
    if creator < 0.16:
        created = tenant.epoch - _SIX_MONTHS_S - rng.randrange(_SIX_MONTHS_S)
        created_at = {"created_at": _iso(created)}
        if creator < 0.08:
            yield _rel("CREATED_BY", RESOURCE_LABEL, slot.id, "User",
                       tenant.user_id(rng.randrange(tenant.users)), shard, created_at)
        else:
            yield _rel("CREATED_BY", RESOURCE_LABEL, slot.id, "ServicePrincipal",
                       tenant.service_principal_id(rng.randrange(tenant.service_principals)),
                       shard, created_at)


def _shard(block: int, rg: _ResourceGroup, shards: int) -> int:
    """Each block is cut into ``shards`` equal stretches, rotated by block; a group goes to
    the stretch its middle lies in. Shards get near-equal numbers of resources whatever
    the group sizes."""
    return (block + rg.block_midpoint * shards // BLOCK_SIZE) % shards


def _chunk_rows(tenant: _Tenant, start: int, end: int, shards: int) -> Iterator[_Row]:
    """Every row owned by resource indices ``[start, end)``, in index order."""
    resources = tenant.spec.resources
    if start == 0 and end > 0:
        yield from _tenant_rows(tenant, shards)
    for block in range(start // BLOCK_SIZE, (end - 1) // BLOCK_SIZE + 1 if end > start else 0):
        for rg, slots in _block_plan(tenant, block):
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


def _check_range(spec: DemoTenantSpec, start: int, end: int, shards: int) -> None:
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
    _check_range(spec, start, end, shards)
    return _chunk_rows(_Tenant(spec), start, end, shards)


def label_key(kind: WriteKind) -> str:
    """``"Resource"``, ``"Resource:Original"``, ``"Tag"`` ...: a node kind's labels."""
    return ":".join((kind[1], *kind[2]))


def expected_counts(spec: DemoTenantSpec) -> Dict[str, Dict[str, int]]:
    """Exact counts of a spec's tenant, by generating it (≈ 0.1 s per 1,000 resources).

    ``{"nodes": {label key: n}, "relationships": {type: n}, "resources_by_type": {type: n}}``,
    where a label key is ``label_key(kind)`` and ``resources_by_type`` counts the
    abstracted resources by ARM type.
    """
    nodes: collections.Counter = collections.Counter()
    relationships: collections.Counter = collections.Counter()
    types: collections.Counter = collections.Counter()
    for tag, ((kind, _), row) in generate_rows(spec):
        if tag == NODES:
            nodes[label_key(kind)] += 1
            if kind == _RESOURCE_KIND:
                types[row["type"]] += 1
        else:
            relationships[kind[1]] += 1
    return {"nodes": dict(nodes), "relationships": dict(relationships),
            "resources_by_type": dict(types)}


def approximate_counts(spec: DemoTenantSpec) -> Tuple[int, int]:
    """(nodes, relationships) within a few percent, without generating: for sizing batches."""
    return (round(spec.resources * NODES_PER_RESOURCE) + 300,
            round(spec.resources * RELATIONSHIPS_PER_RESOURCE) + 10)


# --------------------------------------------------------------------------- Beam

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
        self._tenant = _Tenant(self._spec)
        self._generated = Metrics.counter(METRICS_NAMESPACE, "demo_resources_generated")

    def process(self, chunk: Tuple[int, int]) -> Iterator:
        start, end = chunk
        groups: Dict[Tuple[WriteKind, int], List[Dict[str, Any]]] = {}
        for _, (key, row) in _chunk_rows(self._tenant, start, end, self._shards):
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

    Both PCollections hold row groups ``((kind, shard), [row, ...])`` as ``WriteGraph``
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
        _check_range(spec, start, end, shards)
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
