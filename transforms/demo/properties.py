"""The properties of each resource type: the ARM JSON a scan records for it, the
extra node properties of its type, and a phrase for its description.

The JSON refers to other resources as ARM does: by their ARM id (``original_id``) and
name, never by the abstracted ids of the graph."""

from __future__ import annotations

import base64
import random
from typing import Any, Callable, Dict, List, Sequence, Tuple

from transforms.demo.catalogue import (
    ARM_IMAGES,
    EPOCH_2025,
    SIX_MONTHS_S,
    VM_SIZES,
    ZONES,
    iso,
    json_map,
    random_guid,
)
from transforms.demo.layout import Slot


_Built = Tuple[Dict[str, Any], Dict[str, Any], str]  # (ARM properties, extra node props, detail)


def _ids(slots: Sequence[Slot], end: int) -> List[Dict[str, str]]:
    return [{"id": slot.original_id} for slot in slots if slot.index < end]


def _workspace(slot: Slot, rng: random.Random, end: int) -> _Built:
    retention = rng.choice((30, 90, 180))
    return ({
        "customerId": random_guid(rng), "provisioningState": "Succeeded",
        "sku": {"name": "PerGB2018"}, "retentionInDays": retention,
        "features": {"enableLogAccessUsingOnlyResourcePermissions": True},
        "workspaceCapping": {"dailyQuotaGb": -1.0},
        "publicNetworkAccessForIngestion": "Enabled", "publicNetworkAccessForQuery": "Enabled",
    }, {}, f"retains logs for {retention} days")


def _vnet(slot: Slot, rng: random.Random, end: int) -> _Built:
    octet = slot.index % 250
    subnets = [s for s in slot.referrers if s.kind == "subnet" and s.index < end]
    return ({
        "provisioningState": "Succeeded", "resourceGuid": random_guid(rng),
        "addressSpace": {"addressPrefixes": [f"10.{octet}.0.0/16"]},
        "dhcpOptions": {"dnsServers": []},
        "subnets": [{"id": s.original_id, "name": s.original_name,
                     "properties": {"addressPrefix": f"10.{octet}.{n}.0/24"}}
                    for n, s in enumerate(subnets)],
        "virtualNetworkPeerings": [], "enableDdosProtection": False,
    }, {}, f"address space 10.{octet}.0.0/16 with {len(subnets)} subnets")


def _subnet(slot: Slot, rng: random.Random, end: int) -> _Built:
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
        properties["networkSecurityGroup"] = {"id": nsg[0].original_id}
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


def _nsg(slot: Slot, rng: random.Random, end: int) -> _Built:
    custom = []
    for n, port in enumerate(rng.sample(_PORTS, rng.randint(1, 6))):
        name = f"allow-{port.replace('-', '_')}-{n}"
        source = rng.choice(("VirtualNetwork", "Internet", "10.0.0.0/8", "AzureLoadBalancer"))
        properties = _rule_properties(100 + 10 * n, "Inbound", "Allow", source, port)
        properties["provisioningState"] = "Succeeded"
        custom.append({"name": name, "id": f"{slot.original_id}/securityRules/{name}",
                       "type": "Microsoft.Network/networkSecurityGroups/securityRules",
                       "properties": properties})
    users = [s for s in slot.referrers if s.index < end]
    return ({
        "provisioningState": "Succeeded", "resourceGuid": random_guid(rng),
        "securityRules": custom, "defaultSecurityRules": _DEFAULT_RULES_JSON,
        "subnets": _ids([s for s in users if s.kind == "subnet"], end),
        "networkInterfaces": _ids([s for s in users if s.kind == "nic"], end),
    }, {}, f"{len(custom)} custom inbound rules")


def _pip(slot: Slot, rng: random.Random, end: int) -> _Built:
    address = f"20.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    nics = [s for s in slot.referrers if s.index < end]
    properties = {
        "provisioningState": "Succeeded", "resourceGuid": random_guid(rng),
        "ipAddress": address, "publicIPAddressVersion": "IPv4",
        "publicIPAllocationMethod": "Static", "idleTimeoutInMinutes": 4, "ipTags": [],
    }
    if nics:
        properties["ipConfiguration"] = {"id": f"{nics[0].original_id}/ipConfigurations/ipconfig1"}
    return (properties, {"sku": json_map((("name", "Standard"), ("tier", "Regional"))),
                         "zones": ZONES}, f"static address {address}")


def _nic(slot: Slot, rng: random.Random, end: int) -> _Built:
    subnet, pip, nsg = slot.targets("subnet"), slot.targets("pip"), slot.targets("nsg")
    vms = [s for s in slot.referrers if s.kind == "vm" and s.index < end]
    network = subnet[0].parent.index % 250 if subnet else 0
    address = f"10.{network}.{slot.number % 250}.{4 + slot.index % 250}"
    configuration: Dict[str, Any] = {
        "privateIPAddress": address, "privateIPAllocationMethod": "Dynamic",
        "privateIPAddressVersion": "IPv4", "primary": True,
    }
    if subnet:
        configuration["subnet"] = {"id": subnet[0].original_id}
    if pip:
        configuration["publicIPAddress"] = {"id": pip[0].original_id}
    properties = {
        "provisioningState": "Succeeded", "resourceGuid": random_guid(rng),
        "ipConfigurations": [{"name": "ipconfig1",
                              "id": f"{slot.original_id}/ipConfigurations/ipconfig1",
                              "properties": configuration}],
        "dnsSettings": {"dnsServers": [], "appliedDnsServers": []},
        "enableAcceleratedNetworking": rng.random() < 0.6, "enableIPForwarding": False,
        "macAddress": "00-0D-3A-%02X-%02X-%02X" % tuple(rng.randrange(256) for _ in range(3)),
        "nicType": "Standard",
    }
    if nsg:
        properties["networkSecurityGroup"] = {"id": nsg[0].original_id}
    if vms:
        properties["virtualMachine"] = {"id": vms[0].original_id}
    return properties, {}, f"private address {address}"


def _disk(slot: Slot, rng: random.Random, end: int) -> _Built:
    size = rng.choice((32, 64, 128, 256, 512, 1024))
    tier = rng.choice(("Premium_LRS", "StandardSSD_LRS", "Standard_LRS"))
    owners = [s for s in slot.referrers if s.index < end]
    properties = {
        "provisioningState": "Succeeded", "diskSizeGB": size, "diskSizeBytes": size * 2**30,
        "diskState": "Attached" if owners else "Unattached", "uniqueId": random_guid(rng),
        "creationData": {"createOption": rng.choice(("FromImage", "Empty"))},
        "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
        "networkAccessPolicy": "AllowAll", "publicNetworkAccess": "Enabled",
        "timeCreated": iso(slot.rg.ordinal * 3_600 + EPOCH_2025 - SIX_MONTHS_S),
    }
    extra = {"sku": json_map((("name", tier), ("tier", tier.split("_")[0])))}
    if owners:
        extra["managed_by"] = owners[0].original_id
    return properties, extra, f"{size} GiB {tier}"


def _ssh_key(rng: random.Random) -> str:
    key = rng.getrandbits(2_800).to_bytes(350, "big")
    return "ssh-rsa " + base64.b64encode(key).decode("ascii")


def _vm(slot: Slot, rng: random.Random, end: int) -> _Built:
    size = rng.choice(VM_SIZES)
    publisher, offer, sku, os_type = rng.choice(ARM_IMAGES)
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
        "vmId": random_guid(rng), "provisioningState": "Succeeded",
        "hardwareProfile": {"vmSize": size},
        "storageProfile": {
            "imageReference": {"publisher": publisher, "offer": offer, "sku": sku,
                               "version": "latest"},
            "osDisk": {"osType": os_type, "name": disks[0].original_name if disks else "",
                       "createOption": "FromImage", "caching": "ReadWrite",
                       "deleteOption": "Delete",
                       "managedDisk": {"id": disks[0].original_id if disks else "",
                                       "storageAccountType": "Premium_LRS"}},
            "dataDisks": [{"lun": lun, "name": disk.original_name, "createOption": "Attach",
                           "caching": "ReadOnly", "managedDisk": {"id": disk.original_id}}
                          for lun, disk in enumerate(disks[1:])],
        },
        "osProfile": os_profile,
        "networkProfile": {"networkInterfaces": [
            {"id": nic.original_id, "properties": {"primary": True, "deleteOption": "Detach"}}
            for nic in nics]},
        "diagnosticsProfile": {"bootDiagnostics": {"enabled": True}},
        "securityProfile": {"securityType": "TrustedLaunch",
                            "uefiSettings": {"secureBootEnabled": True, "vTpmEnabled": True}},
        "timeCreated": iso(slot.rg.ordinal * 3_600 + EPOCH_2025 - SIX_MONTHS_S),
    }
    return properties, {"zones": f'["{rng.choice("123")}"]'}, f"{os_type} {size} running {offer}"


def _storage(slot: Slot, rng: random.Random, end: int) -> _Built:
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
    }, {"sku": json_map((("name", replication), ("tier", "Standard"))), "kind": "StorageV2"},
        f"{replication} general-purpose v2 storage")


def _vault(slot: Slot, rng: random.Random, end: int) -> _Built:
    directory = slot.rg.directory_id
    policies = [{
        "tenantId": directory, "objectId": random_guid(rng),
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


def _plan(slot: Slot, rng: random.Random, end: int) -> _Built:
    tier, name = rng.choice((("Basic", "B1"), ("Standard", "S1"), ("PremiumV3", "P1v3"),
                             ("PremiumV3", "P2v3")))
    sites = sum(1 for s in slot.referrers if s.index < end)
    linux = rng.random() < 0.6
    return ({
        "provisioningState": "Succeeded", "status": "Ready", "reserved": linux,
        "numberOfSites": sites, "maximumNumberOfWorkers": 30, "perSiteScaling": False,
        "zoneRedundant": False, "kind": "linux" if linux else "app",
    }, {"sku": json_map((("name", name), ("tier", tier), ("capacity", rng.randint(1, 3)))),
        "kind": "linux" if linux else "app"}, f"{tier} {name} hosting {sites} apps")


def _site(slot: Slot, rng: random.Random, end: int) -> _Built:
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
        "serverFarmId": plan[0].original_id if plan else "", "httpsOnly": True,
        "clientAffinityEnabled": False,
        "siteConfig": {"linuxFxVersion": runtime, "alwaysOn": True, "http20Enabled": True,
                       "minTlsVersion": "1.2", "ftpsState": "Disabled", "appSettings": settings},
        "usageState": "Normal", "availabilityState": "Normal",
    }, {"kind": "app,linux"}, f"runs {runtime.replace('|', ' ')}")


def _insights(slot: Slot, rng: random.Random, end: int) -> _Built:
    key = random_guid(rng)
    return ({
        "ApplicationId": slot.name, "AppId": random_guid(rng), "Application_Type": "web",
        "InstrumentationKey": key,
        "ConnectionString": f"InstrumentationKey={key};IngestionEndpoint="
                            f"https://{slot.rg.location}-0.in.applicationinsights.azure.com/",
        "RetentionInDays": 90, "IngestionMode": "LogAnalytics", "provisioningState": "Succeeded",
    }, {"kind": "web"}, "collects web telemetry")


def _sqlserver(slot: Slot, rng: random.Random, end: int) -> _Built:
    return ({
        "administratorLogin": "sqladmin", "version": "12.0", "state": "Ready",
        "fullyQualifiedDomainName": f"{slot.name}.database.windows.net",
        "minimalTlsVersion": "1.2", "publicNetworkAccess": rng.choice(("Enabled", "Disabled")),
        "restrictOutboundNetworkAccess": "Disabled",
    }, {"kind": "v12.0"}, "SQL logical server v12.0")


def _sqldb(slot: Slot, rng: random.Random, end: int) -> _Built:
    name, tier, capacity = rng.choice((("S0", "Standard", 10), ("S2", "Standard", 50),
                                       ("GP_Gen5_2", "GeneralPurpose", 2),
                                       ("BC_Gen5_4", "BusinessCritical", 4)))
    max_gb = rng.choice((32, 250, 500))
    return ({
        "collation": "SQL_Latin1_General_CP1_CI_AS", "maxSizeBytes": max_gb * 2**30,
        "status": "Online",
        "databaseId": random_guid(rng), "currentServiceObjectiveName": name,
        "requestedServiceObjectiveName": name, "defaultSecondaryLocation": slot.rg.location,
        "catalogCollation": "SQL_Latin1_General_CP1_CI_AS", "zoneRedundant": False,
        "readScale": "Disabled", "currentBackupStorageRedundancy": "Geo", "isLedgerOn": False,
    }, {"sku": json_map((("name", name), ("tier", tier), ("capacity", capacity))),
        "kind": "v12.0,user"},
        f"{tier} {name}, {max_gb} GB")


def _endpoint(slot: Slot, rng: random.Random, end: int) -> _Built:
    target, subnet = slot.targets(slot.links[0].target.kind), slot.targets("subnet")
    group = slot.links[0].props["group_id"]
    return ({
        "provisioningState": "Succeeded",
        "subnet": {"id": subnet[0].original_id if subnet else ""},
        "privateLinkServiceConnections": [{
            "name": f"{slot.name}-{group}", "properties": {
                "privateLinkServiceId": target[0].original_id, "groupIds": [group],
                "privateLinkServiceConnectionState": {"status": "Approved",
                                                      "actionsRequired": "None"}}}],
        "customDnsConfigs": [], "networkInterfaces": [],
    }, {}, f"private link to {target[0].name} ({group})")


BUILDERS: Dict[str, Callable[[Slot, random.Random, int], _Built]] = {
    "workspace": _workspace, "vnet": _vnet, "subnet": _subnet, "nsg": _nsg, "pip": _pip,
    "nic": _nic, "disk": _disk, "vm": _vm, "storage": _storage, "vault": _vault, "plan": _plan,
    "site": _site, "insights": _insights, "sqlserver": _sqlserver, "sqldb": _sqldb,
    "endpoint": _endpoint,
}
