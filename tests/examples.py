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


def spec_example(variant: str = "dhcp", *, image_id: int = 1, node_id: int = 5) -> dict:
    body = copy.deepcopy(_EXAMPLE)
    body["os"]["imageId"] = image_id
    body["hypervisorNodeId"] = node_id
    if variant == "static":
        body["network"] = copy.deepcopy(STATIC_NETWORK)
    return body


SECRETS = (ADMIN_PASSWORD, PRODUCT_KEY, JOIN_PASSWORD, NODE_PASSWORD)
