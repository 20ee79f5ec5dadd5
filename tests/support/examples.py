"""The spec's example task request (its comment and duplicate `mode` removed), in both variants."""

from __future__ import annotations

import copy

ADMIN_PASSWORD = "Adm1n-Pa55word!unique-7f3c"
PRODUCT_KEY = "VDYBN-27WPP-V4HQT-9VMD4-VMK7H"
JOIN_PASSWORD = "J0in-Pa55word!unique-91ab"
NODE_PASSWORD = "N0de-Pa55word!unique-c0de"

_EXAMPLE = {
    "hostname": "SQL-SERVER-01",
    "targetType": "hyperv",
    "hypervisorNodeId": 5,
    "vm": {
        "cpu": 4,
        "memoryGb": 16,
        "generation": 2,
        "secureboot": True,
        "disks": [
            {"sizeGb": 100, "purpose": "os", "type": "dynamic"},
            {"sizeGb": 200, "purpose": "data", "type": "fixed"},
            {"sizeGb": 100, "purpose": "log", "type": "fixed"},
            {"sizeGb": 50, "purpose": "tempdb", "type": "fixed"},
        ],
        "network": {"vswitch": "vSwitch-Prod", "vlan": 100},
        "storagePath": "D:\\Hyper-V\\Virtual Hard Disks",
    },
    "os": {
        "imageId": 1,
        "language": "de-DE",
        "timezone": "W. Europe Standard Time",
        "productKey": PRODUCT_KEY,
        "adminPassword": ADMIN_PASSWORD,
    },
    "network": {"mode": "dhcp"},
    "domain": {
        "join": True,
        "name": "yourdom.local",
        "ou": "OU=SQL Servers,OU=Servers,DC=yourdom,DC=local",
        "method": "offline",
        "serviceAccount": {"username": "YOURDOM\\svc-domainjoin", "password": JOIN_PASSWORD},
    },
    "postInstall": {
        "installAgent": True,
        "addToGroups": [5, 12],
        "runPackages": [{"packageId": 8, "parameters": {"instanceName": "YOURDBSERVER"}}],
        "runScripts": [{"name": "Configure-Firewall.ps1"}],
    },
}

STATIC_NETWORK = {
    "mode": "static",
    "ip": "198.51.100.50",
    "subnet": "255.255.255.0",
    "gateway": "198.51.100.1",
    "dns": ["198.51.100.10", "198.51.100.11"],
}


# The package and groups the example's postInstall names, for tests that store them (their ids then
# go to spec_example's package_id and group_ids).
EXAMPLE_PACKAGE = {
    "name": "SQL Server 2022", "osType": "windows", "script": "param([string]$instanceName)\n",
    "parametersSchema": {"type": "object", "properties": {"instanceName": {"type": "string"}},
                         "required": ["instanceName"]},
}
EXAMPLE_GROUPS = ({"name": "SQL Servers"}, {"name": "Berlin"})


def spec_example(variant: str = "dhcp", *, image_id: int = 1, node_id: int = 5, package_id: int = 8,
                 group_ids: tuple[int, ...] | list[int] = (5, 12)) -> dict:
    body = copy.deepcopy(_EXAMPLE)
    body["os"]["imageId"] = image_id
    body["hypervisorNodeId"] = node_id
    body["postInstall"]["runPackages"][0]["packageId"] = package_id
    body["postInstall"]["addToGroups"] = list(group_ids)
    if variant == "static":
        body["network"] = copy.deepcopy(STATIC_NETWORK)
    return body


def store_post_install(post) -> dict:
    """Store the example's package and groups through ``post(resource, body) -> id`` ("packages",
    "groups"); their ids, as spec_example's keyword arguments."""
    return {"package_id": post("packages", EXAMPLE_PACKAGE),
            "group_ids": [post("groups", group) for group in EXAMPLE_GROUPS]}


def store_post_install_in(session) -> dict:
    """store_post_install through the domain layer, for tests that have a database but no API."""
    from octoprov import groups, packages
    from octoprov.specs import parse

    def post(resource: str, body: dict) -> int:
        if resource == "packages":
            return packages.register_package(session, parse(packages.PackageSpec, body)).id
        return groups.register_group(session, parse(groups.GroupSpec, body)).id

    return store_post_install(post)


SECRETS = (ADMIN_PASSWORD, PRODUCT_KEY, JOIN_PASSWORD, NODE_PASSWORD)


def task_spec(target_type: str, hostname: str, *, os_type: str = "windows", **sections):
    """A validated TaskSpec for tests that build a driver's context by hand: the target's required
    fields filled in (node 1, image 1), ``sections`` (camelCase request sections) over them."""
    from octoprov.taskspec import TaskSpec

    body: dict = {"hostname": hostname, "targetType": target_type, "os": {"imageId": 1}}
    if target_type == "baremetal":
        body["macAddress"] = sections.pop("macAddress", "52:54:00:00:00:01")
    else:
        body["hypervisorNodeId"] = 1
        body["vm"] = {"disks": [{"sizeGb": 40, "purpose": "os"}]}
    body.update(sections)
    return TaskSpec.model_validate(body, context={"os_type": os_type})
