"""The demo tenant's vocabulary: resource types, regions, tags, roles, workloads,
and how its values (GUIDs, JSON, times) are written."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import random
import time
from typing import Any, Dict, Tuple


RESOURCE_LABEL = "Resource"
ORIGINAL_LABEL = "Original"
#: Every label the demo tenant merges nodes on (each needs an index on ``id``).
NODE_LABELS = (
    RESOURCE_LABEL, "Tenant", "Subscription", "ResourceGroup", "Region", "Tag", "User",
    "ServicePrincipal", "ManagedIdentity", "RoleDefinition", "RoleAssignment", "KeyVaultSecret",
)
INDEX_SPECS = tuple((label, ("id",)) for label in NODE_LABELS)
#: The labels of nodes every tenant shares: no ``tenant_id``, ids independent of the tenant.
SHARED_LABELS = ("Region", "Tag")


@dataclasses.dataclass(frozen=True)
class _TypeInfo:
    arm_type: str
    prefix: str  # name prefix, as in Azure's naming guidance
    noun: str  # for llm_description
    id_prefix: str  # abstracted id prefix: ``<id_prefix>-<16 hex>``, one per type


TYPES: Dict[str, _TypeInfo] = {
    "workspace": _TypeInfo("Microsoft.OperationalInsights/workspaces", "log",
                           "Log Analytics workspace", "log"),
    "vnet": _TypeInfo("Microsoft.Network/virtualNetworks", "vnet", "Virtual network", "vnet"),
    "subnet": _TypeInfo("Microsoft.Network/virtualNetworks/subnets", "snet", "Subnet", "subnet"),
    "nsg": _TypeInfo("Microsoft.Network/networkSecurityGroups", "nsg", "Network security group",
                     "nsg"),
    "pip": _TypeInfo("Microsoft.Network/publicIPAddresses", "pip", "Public IP address", "pip"),
    "nic": _TypeInfo("Microsoft.Network/networkInterfaces", "nic", "Network interface", "nic"),
    "disk": _TypeInfo("Microsoft.Compute/disks", "disk", "Managed disk", "disk"),
    "vm": _TypeInfo("Microsoft.Compute/virtualMachines", "vm", "Virtual machine", "vm"),
    "storage": _TypeInfo("Microsoft.Storage/storageAccounts", "st", "Storage account", "st"),
    "vault": _TypeInfo("Microsoft.KeyVault/vaults", "kv", "Key vault", "kv"),
    "plan": _TypeInfo("Microsoft.Web/serverFarms", "asp", "App Service plan", "asp"),
    "site": _TypeInfo("Microsoft.Web/sites", "app", "Web app", "app"),
    "insights": _TypeInfo("Microsoft.Insights/components", "appi",
                          "Application Insights component", "appi"),
    "sqlserver": _TypeInfo("Microsoft.Sql/servers", "sql", "Azure SQL logical server", "sql"),
    "sqldb": _TypeInfo("Microsoft.Sql/servers/databases", "sqldb", "Azure SQL database", "sqldb"),
    "endpoint": _TypeInfo("Microsoft.Network/privateEndpoints", "pe", "Private endpoint", "pe"),
}
#: Child types: their ARM id nests under the parent's (``.../virtualNetworks/v/subnets/s``).
CHILD_SEGMENT = {"subnet": "subnets", "sqldb": "databases"}
#: The ARM resource types this generator produces.
RESOURCE_TYPES = tuple(info.arm_type for info in TYPES.values())

REGIONS = (
    ("eastus", "East US"), ("eastus2", "East US 2"), ("westus2", "West US 2"),
    ("centralus", "Central US"), ("northeurope", "North Europe"), ("westeurope", "West Europe"),
    ("uksouth", "UK South"), ("swedencentral", "Sweden Central"),
    ("southeastasia", "Southeast Asia"), ("australiaeast", "Australia East"),
)
APPS = ("payments", "orders", "crm", "billing", "portal", "search", "hr", "analytics",
         "catalog", "identity", "reports", "iot")
ENVS = ("prod", "prod", "staging", "dev", "test")
TAG_VALUES = {
    "environment": ("prod", "staging", "dev", "test"),
    "application": APPS,
    "costCenter": ("CC1001", "CC1002", "CC2040", "CC3100", "CC4200", "CC5150"),
    "owner": ("platform-team", "data-team", "web-team", "security-team", "finance-it", "ml-team"),
    "managedBy": ("terraform", "bicep", "portal", "pipeline"),
    "dataClassification": ("public", "internal", "confidential"),
}
OPTIONAL_TAG_KEYS = ("owner", "managedBy", "dataClassification")
#: Built-in roles: (role definition GUID, name, description).
ROLE_DEFINITIONS = (
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
WORKLOADS = ("network", "compute", "web", "data", "mixed")
WORKLOAD_WEIGHTS = (1, 4, 3, 2, 3)
RG_SIZES = (5, 6, 8, 10, 12, 15, 18, 20, 25, 30, 40)
VM_SIZES = ("Standard_B2s", "Standard_D2s_v5", "Standard_D4s_v5", "Standard_D8s_v5",
             "Standard_E4s_v5", "Standard_F4s_v2")
ZONES = '["1", "2", "3"]'
EPOCH_2025 = 1_735_689_600  # 2025-01-01T00:00:00Z
SIX_MONTHS_S = 182 * 86_400
ARM_IMAGES = (
    ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2", "Linux"),
    ("RedHat", "RHEL", "9-lvm-gen2", "Linux"),
    ("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-azure-edition", "Windows"),
)


def _format_guid(bits: int) -> str:
    """128 random bits as a version-4 GUID (by hand: 4x cheaper than ``uuid.UUID``)."""
    h = f"{(bits & ~(0xC << 60)) | (0x8 << 60):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


def hashed_guid(*parts: object) -> str:
    """A GUID that is a hash of ``parts``."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=16).digest()
    return _format_guid(int.from_bytes(digest, "big"))


def random_guid(rng: random.Random) -> str:
    return _format_guid(rng.getrandbits(128))


def abstracted_id(id_prefix: str, arm_id: str) -> str:
    """An abstracted resource's id, as Azure Tenant Grapher makes them: its type's prefix and
    16 hex digits (64 bits) of a hash of its ARM id, e.g. ``vm-a1b2c3d4e5f6a7b8``. Nothing
    of the resource group or subscription survives, so id order carries no locality. Two
    of 10M resources collide with a chance of about 3e-6 (n²/2⁶⁵)."""
    digest = hashlib.blake2b(arm_id.encode("utf-8"), digest_size=8).hexdigest()
    return f"{id_prefix}-{digest}"


def region_id(location: str) -> str:
    """A ``Region`` node's id: its location name. Regions are shared by every tenant."""
    return location


def tag_id(key: str, value: str) -> str:
    """A ``Tag`` node's id: ``key=value``. Tags are shared by every tenant."""
    return f"{key}={value}"


@functools.lru_cache(maxsize=4096)
def json_map(value: Tuple[Tuple[str, Any], ...]) -> str:
    """JSON of a small flat mapping given as items; the few distinct ones are cached."""
    return json.dumps(dict(value))


def json_strings(mapping: Dict[str, str]) -> str:
    """JSON of a flat str→str mapping whose strings need no escaping (tags)."""
    return "{" + ", ".join(f'"{key}": "{value}"' for key, value in mapping.items()) + "}"


def iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
