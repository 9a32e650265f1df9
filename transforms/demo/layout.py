"""The layout of a demo tenant: tenant-wide values, and blocks of resource indices
cut into resource groups filled with workloads (which resources exist, how they link).

A block plan depends only on (tenant, seed, block), never on the tenant's size or on
how the index range is chunked; every link points to an earlier resource of the same
resource group."""

from __future__ import annotations

import dataclasses
import functools
import random
from typing import Any, Dict, List, Optional, Tuple

from transforms.demo.catalogue import (
    APPS,
    CHILD_SEGMENT,
    ENVS,
    EPOCH_2025,
    REGIONS,
    RG_SIZES,
    ROLE_DEFINITIONS,
    TAG_VALUES,
    TYPES,
    WORKLOAD_WEIGHTS,
    WORKLOADS,
    abstracted_id,
    hashed_guid,
)
from transforms.demo.spec import DemoTenantSpec


#: Resource indices per layout block; resource groups never span two blocks.
BLOCK_SIZE = 100


class Tenant:
    """Tenant-wide values: computed once per spec, small (O(subscriptions))."""

    def __init__(self, spec: DemoTenantSpec) -> None:
        self.spec = spec
        self.key = f"{spec.tenant_id}\x1f{spec.seed}"
        rng = random.Random(f"demo-tenant\x1f{self.key}")
        self.subscriptions = [hashed_guid(self.key, "subscription", i) for i in range(spec.subscriptions)]
        self.subscription_names = [
            f"{spec.tenant_id}-{name}" for name in
            (["production", "non-production", "shared-services", "sandbox"]
             + [f"workload-{i:03d}" for i in range(4, spec.subscriptions)])[:spec.subscriptions]]
        self.subscription_weights = [1.0 / (i + 1) for i in range(spec.subscriptions)]
        scope = f"/subscriptions/{self.subscriptions[0]}"
        #: (location, display name) of the tenant's four regions, the first one primary.
        self.regions: List[Tuple[str, str]] = rng.sample(REGIONS, 4)
        self.role_definitions = [
            (f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}", name, text)
            for guid, name, text in ROLE_DEFINITIONS
        ]
        self.users = min(5_000, max(3, spec.resources // 50))
        self.service_principals = min(1_000, max(2, spec.resources // 250))
        self.scan_id = f"scan-{hashed_guid(self.key, 'scan')}"
        self.directory_id = hashed_guid(self.key, "directory")  # the Entra tenant GUID
        self.epoch = EPOCH_2025 + rng.randrange(0, 90 * 86_400)
        self.name_mask = rng.getrandbits(32)

    @functools.lru_cache(maxsize=8192)
    def user_id(self, number: int) -> str:
        return hashed_guid(self.key, "user", number)

    @functools.lru_cache(maxsize=2048)
    def service_principal_id(self, number: int) -> str:
        return hashed_guid(self.key, "service-principal", number)

    def resource_name_hash(self, index: int) -> str:
        """8 hex digits, distinct for every index below 2**32 (a bijection of 32-bit ints)."""
        return f"{((index * 0x9E3779B1) & 0xFFFFFFFF) ^ self.name_mask:08x}"


# --------------------------------------------------------------------------- block plans

@dataclasses.dataclass(eq=False)
class ResourceGroup:
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
    target: "Slot"
    outgoing: bool  # True: (slot)-[rel]->(target), False: (target)-[rel]->(slot)
    props: Dict[str, Any]


@dataclasses.dataclass(eq=False)  # compared by identity: slots link to each other
class Slot:
    index: int
    kind: str
    rg: ResourceGroup
    number: int  # position in its resource group
    name: str = ""
    original_name: str = ""
    id: str = ""  # the abstracted id: type prefix and a hash of ``original_id``
    original_id: str = ""  # the ARM id, from the original names
    parent: Optional["Slot"] = None
    links: List[_Link] = dataclasses.field(default_factory=list)
    referrers: List["Slot"] = dataclasses.field(default_factory=list)
    uses_rg_identity: bool = False

    def targets(self, kind: str) -> List["Slot"]:
        return [link.target for link in self.links if link.outgoing and link.target.kind == kind]


class _Full(Exception):
    """The resource group has no slot left: the workload stops there."""


class _GroupBuilder:
    """Adds slots to one resource group; every link points to an earlier slot."""

    def __init__(self, tenant: Tenant, rg: ResourceGroup, rng: random.Random) -> None:
        self.tenant = tenant
        self.rg = rg
        self.rng = rng
        self.slots: List[Slot] = []
        self.first: Dict[str, Slot] = {}

    def add(self, kind: str, parent: Optional[Slot] = None) -> Slot:
        if len(self.slots) == self.rg.size:
            raise _Full()
        rg, info = self.rg, TYPES[kind]
        number = len(self.slots)
        slot = Slot(index=rg.first_index + number, kind=kind, rg=rg, number=number)
        slot.name = f"{info.prefix}-{self.tenant.resource_name_hash(slot.index)}"
        if kind == "storage":  # 3-24 lowercase letters and digits
            slot.name = slot.name.replace("-", "")
            slot.original_name = f"st{rg.app}{rg.env}{slot.number:03d}"[:24]
        else:
            slot.original_name = f"{info.prefix}-{rg.app}-{rg.env}-{slot.number:03d}"
        if parent is None:
            slot.original_id = f"{rg.id}/providers/{info.arm_type}/{slot.original_name}"
        else:
            slot.original_id = f"{parent.original_id}/{CHILD_SEGMENT[kind]}/{slot.original_name}"
            slot.parent = parent
        slot.id = abstracted_id(info.id_prefix, slot.original_id)
        self.slots.append(slot)
        self.first.setdefault(kind, slot)
        return slot

    def link(self, source: Slot, rel_type: str, target: Optional[Slot],
             props: Optional[Dict[str, Any]] = None, outgoing: bool = True) -> None:
        """Record ``(source)-[rel_type]->(target)`` (reversed if not ``outgoing``)."""
        if target is not None:
            source.links.append(_Link(rel_type, target, outgoing, props or {}))
            target.referrers.append(source)

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def diagnostics(self, source: Slot, probability: float) -> None:
        workspace = self.first.get("workspace")
        if workspace is not None and self.chance(probability):
            self.link(source, "SENDS_DIAG_TO", workspace,
                      {"categories": "allLogs", "retention_days": self.rng.choice((30, 90, 365))})

    # The stacks: small sets of resources that belong together.

    def network(self, subnets: int) -> Tuple[Slot, List[Slot]]:
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

    def vm(self, subnets: List[Slot]) -> None:
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

    def web(self, plan: Slot, subnets: List[Slot]) -> None:
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

    def endpoint(self, target: Slot, group_id: str, subnets: List[Slot]) -> None:
        endpoint = self.add("endpoint")
        self.link(endpoint, "CONNECTED_TO_PE", target,
                  {"group_id": group_id, "connection_state": "Approved"})
        self.link(endpoint, "USES_SUBNET", subnets[-1])

    def sql(self, subnets: List[Slot]) -> None:
        server = self.add("sqlserver")
        self.diagnostics(server, 0.4)
        for _ in range(self.rng.randint(1, 4)):
            database = self.add("sqldb", parent=server)
            self.link(database, "DEPENDS_ON", server)
        if subnets and self.chance(0.5):
            self.endpoint(server, "sqlServer", subnets)

    def storage(self, subnets: List[Slot]) -> None:
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
        size = min(rng.choice(RG_SIZES), remaining)
        if remaining - size < RG_SIZES[0]:
            size = remaining
        sizes.append(size)
        remaining -= size
    return sizes


def block_plan(tenant: Tenant, block: int) -> List[Tuple[ResourceGroup, List[Slot]]]:
    """The resource groups of one block and their slots (independent of the tenant size)."""
    rng = random.Random(f"{tenant.key}\x1fblock\x1f{block}")
    primary = tenant.regions[0][0]
    others = [code for code, _ in tenant.regions[1:]]
    groups = []
    first_index = block * BLOCK_SIZE
    for local, size in enumerate(_group_sizes(rng)):
        ordinal = block * BLOCK_SIZE + local  # unique; at most BLOCK_SIZE groups per block
        subscription = rng.choices(tenant.subscriptions, tenant.subscription_weights)[0]
        location = primary if rng.random() < 0.7 else rng.choice(others)
        app, env = rng.choice(APPS), rng.choice(ENVS)
        workload = rng.choices(WORKLOADS, WORKLOAD_WEIGHTS)[0]
        name = f"rg-{app}-{env}-{location}-{ordinal:06d}"
        rg_id = f"/subscriptions/{subscription}/resourceGroups/{name}"
        identity_id = None
        if workload != "network" and rng.random() < 0.5:
            identity_id = (f"{rg_id}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
                           f"id-{app}-{env}")
        rg = ResourceGroup(
            ordinal=ordinal, first_index=first_index, size=size, name=name, id=rg_id,
            subscription=subscription, location=location, app=app, env=env, workload=workload,
            tags={"environment": "prod" if env == "prod" else env, "application": app,
                  "costCenter": rng.choice(TAG_VALUES["costCenter"])},
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
