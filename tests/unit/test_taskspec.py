"""The provisioning request and template bodies: the spec's example, each field's errors, merging, secrets."""

from __future__ import annotations

import copy
import json
import re
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octoprov.errors import InvalidRequest
from octoprov.references import script_os_type
from octoprov.settings import Settings
from octoprov.taskspec import (
    SECRET_PATHS,
    TaskSpec,
    TemplateSpec,
    merge_defaults,
    parse_task_request,
    parse_template,
    template_defaults,
)
from tests.support.examples import ADMIN_PASSWORD, JOIN_PASSWORD, PRODUCT_KEY, spec_example


class FakeRefs:
    """Images 1 (windows) and 2 (linux), template 3, hypervisors 5 (hyperv) and 6 (kvm), Windows
    packages 8 (parameter instanceName) and 9, groups 5, 7 and 12, the shipped scripts library."""

    images = {1: "windows", 2: "linux"}
    templates = {3}
    nodes = {5: "hyperv", 6: "kvm"}
    packages = {
        8: SimpleNamespace(name="SQL Server", os_type="windows", parameters_schema={
            "type": "object", "properties": {"instanceName": {"type": "string"}}, "required": []}),
        9: SimpleNamespace(name="Monitoring", os_type="windows", parameters_schema={}),
    }
    groups = {5, 7, 12}

    def image_os_type(self, image_id):
        return self.images.get(image_id)

    def image_indexes(self, image_id):
        return [1, 2, 3] if image_id == 1 else None

    def template_exists(self, template_id):
        return template_id in self.templates

    def hypervisor_kind(self, node_id):
        return self.nodes.get(node_id)

    def package(self, package_id):
        return self.packages.get(package_id)

    def group_exists(self, group_id):
        return group_id in self.groups

    def script_os_type(self, name):
        return script_os_type(name, Settings().effective_scripts_dir)


REFS = FakeRefs()


def static_example() -> dict:
    """The spec's example body (static variant), with every optional field of the request set."""
    body = spec_example("static")
    body["macAddress"] = "00:15:5D:01:02:03"
    body["templateId"] = 3
    body["vm"]["disks"] = body["vm"]["disks"][:2]
    body["os"]["imageIndex"] = 2
    body["options"] = {"keepVmOnFailure": False}
    return body


def dhcp_example() -> dict:
    body = static_example()
    body["network"] = {"mode": "dhcp", "dns": ["198.51.100.10", "198.51.100.11"]}
    return body


def baremetal_example() -> dict:
    body = static_example()
    body["targetType"] = "baremetal"
    del body["vm"], body["hypervisorNodeId"]
    return body


DELETE = object()


def _steps(path: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.findall(r"[^.\[\]]+", path)]


def changed(body: dict, *changes: tuple[str, object]) -> dict:
    """A copy of ``body`` with each ``(path, value)`` set, or removed when value is DELETE."""
    body = copy.deepcopy(body)
    for path, value in changes:
        *parents, last = _steps(path)
        target = body
        for step in parents:
            target = target[step]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return body


def errors_of(body: object, defaults: dict | None = None) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as raised:
        parse_task_request(body, defaults or {}, REFS)
    return raised.value.errors


# --- the spec's example ------------------------------------------------------------------


@pytest.mark.parametrize("example", [static_example, dhcp_example, baremetal_example])
def test_example_accepted(example):
    spec = parse_task_request(example(), {}, REFS)
    assert isinstance(spec, TaskSpec)
    assert spec.hostname == "SQL-SERVER-01"
    assert spec.mac_address == "00:15:5d:01:02:03"
    assert spec.os.product_key == PRODUCT_KEY
    assert spec.domain.ou == "OU=SQL Servers,OU=Servers,DC=yourdom,DC=local"
    assert spec.post_install.run_packages[0].parameters == {"instanceName": "YOURDBSERVER"}


def test_example_values():
    spec = parse_task_request(static_example(), {}, REFS)
    assert spec.vm is not None
    assert [(d.size_gb, d.purpose, d.type) for d in spec.vm.disks] == [(100, "os", "dynamic"), (200, "data", "fixed")]
    assert spec.vm.storage_path == "D:\\Hyper-V\\Virtual Hard Disks"
    assert spec.network.ip == "198.51.100.50"
    assert spec.network.dns == ["198.51.100.10", "198.51.100.11"]


def test_minimal_request_gets_defaults():
    body = {
        "hostname": "WEB01",
        "targetType": "kvm",
        "hypervisorNodeId": 6,
        "vm": {"disks": [{"sizeGb": 60, "purpose": "os"}]},
        "os": {"imageId": 1, "language": "en-us"},
    }
    spec = parse_task_request(body, {}, REFS)
    assert (spec.vm.cpu, spec.vm.memory_gb, spec.vm.generation, spec.vm.secureboot) == (4, 16, 2, True)
    assert spec.vm.disks[0].type == "dynamic"
    assert (spec.os.language, spec.os.timezone) == ("en-US", "W. Europe Standard Time")
    assert spec.network.mode == "dhcp"
    assert spec.domain.join is False
    assert spec.post_install.install_agent is True
    assert spec.options.keep_vm_on_failure is False


def test_generation_1_defaults_secureboot_off():
    body = changed(static_example(), ("vm.generation", 1), ("vm.secureboot", DELETE))
    assert parse_task_request(body, {}, REFS).vm.secureboot is False


def test_linux_image_allows_long_hostname():
    long_name = "sql-server-replica-01"
    linux = changed(static_example(), ("hostname", long_name), ("os.imageId", 2), ("postInstall", DELETE))
    assert parse_task_request(linux, {}, REFS)
    assert "hostname" in errors_of(changed(static_example(), ("hostname", long_name)))


def test_join_false_ignores_domain_fields():
    body = changed(static_example(), ("domain.join", False), ("domain.name", "yourdom"), ("domain.ou", "junk"))
    assert parse_task_request(body, {}, REFS).domain.join is False


# --- one invalid field, one error under that field's path --------------------------------

INVALID_FIELDS = [
    ("hostname", "SQL-SERVER-01-PRIMARY"),  # 21 > 15: NetBIOS
    ("hostname", "-SQL"),
    ("hostname", "12345"),
    ("hostname", 12345),
    ("targetType", "xen"),
    ("hypervisorNodeId", "5"),
    ("hypervisorNodeId", 0),
    ("hypervisorNodeId", 99),  # no such node
    ("hypervisorNodeId", 6),  # a kvm host
    ("hypervisorNodeId", 2**40),
    ("macAddress", "00:15:5D:01:02"),
    ("macAddress", "FF:FF:FF:FF:FF:FF"),
    ("macAddress", "01:00:5E:00:00:01"),
    ("templateId", 42),  # no such template
    ("templateId", True),
    ("vm", "big"),
    ("vm.cpu", "4"),
    ("vm.cpu", 0),
    ("vm.cpu", 241),
    ("vm.cpu", 4.0),
    ("vm.memoryGb", 12289),
    ("vm.generation", 3),
    ("vm.generation", True),
    ("vm.secureboot", "yes"),
    ("vm.disks", []),
    ("vm.disks", [{"sizeGb": 10, "purpose": "os"}] * 65),
    ("vm.disks[1].sizeGb", 0),
    ("vm.disks[1].sizeGb", 65537),
    ("vm.disks[1].purpose", "swap"),
    ("vm.disks[1].type", "thin"),
    ("vm.network.vswitch", ""),
    ("vm.network.vlan", 4095),
    ("vm.network.vlan", 0),
    ("vm.storagePath", "D:\\V\nMs"),
    ("vm.storagePath", "D:\\" + "x" * 500),
    ("os.imageId", 7),  # no such image
    ("os.imageId", "1"),
    ("os.imageIndex", 0),
    ("os.language", "xx-XX"),
    ("os.timezone", "Europe/Berlin"),
    ("os.productKey", "XXXXX-XXXXX-XXXXX-XXXXX-XXXXX"),
    ("os.productKey", "VDYB0-27WPP-V4HQT-9VMD4-VMK7H"),
    ("os.adminPassword", ""),
    ("os.adminPassword", "x" * 128),
    ("network.mode", "manual"),
    ("network.ip", "198.51.100.256"),
    ("network.ip", "198.51.100.0"),  # the network address
    ("network.ip", "198.51.100.255"),  # the broadcast address
    ("network.subnet", "255.0.255.0"),
    ("network.subnet", 24),
    ("network.gateway", "203.0.113.1"),  # outside the subnet
    ("network.gateway", "198.51.100.50"),  # the ip itself
    ("network.dns", "198.51.100.10"),
    ("network.dns", ["198.51.100.10"] * 5),
    ("network.dns[1]", "2001:db8::1"),
    ("domain.join", "true"),
    ("domain.name", "yourdom"),  # single label
    ("domain.name", 5),
    ("domain.ou", "OU=SQL Servers,DC=otherdom,DC=local"),
    ("domain.ou", "OU=SQL Servers"),
    ("domain.method", "kerberos"),
    ("domain.serviceAccount.username", "YOURDOM\\svc\\join"),
    ("domain.serviceAccount.password", ""),
    ("postInstall.installAgent", 1),
    ("postInstall.addToGroups", [5, 5]),
    ("postInstall.addToGroups[1]", 0),
    ("postInstall.runPackages[0].packageId", 0),
    ("postInstall.runPackages[0].parameters", ["instanceName"]),
    ("postInstall.runPackages[0].parameters.instanceName", ["a", "b"]),
    ("postInstall.runPackages[0].parameters.instance-name", "x"),
    ("postInstall.runScripts[0].name", "../evil.ps1"),
    ("options.keepVmOnFailure", "no"),
    # unknown fields, including snake_case spellings of known ones
    ("vm.memory", 16),
    ("vm.memory_gb", 16),
    ("os.productkey", PRODUCT_KEY),
    ("color", "blue"),
]


@pytest.mark.parametrize(("path", "value"), INVALID_FIELDS, ids=[f"{p}={v!r}"[:60] for p, v in INVALID_FIELDS])
def test_invalid_field_reported_under_its_path(path, value):
    errors = errors_of(changed(static_example(), (path, value)))
    assert set(errors) == {path}
    assert all(errors.values())


def test_unknown_parameter_key_path():
    body = changed(static_example(), ("postInstall.runScripts[0].parameters", {"1st": 1}))
    assert set(errors_of(body)) == {"postInstall.runScripts[0].parameters.1st"}


# --- rules between fields ----------------------------------------------------------------

CROSS_FIELD = [
    ("baremetal with vm and node", [("targetType", "baremetal")], {"vm", "hypervisorNodeId"}),
    ("baremetal without mac", [("macAddress", DELETE)], set()),  # optional for VMs
    ("hyperv without vm", [("vm", DELETE)], {"vm"}),
    ("hyperv with vm null", [("vm", None)], {"vm"}),
    ("hyperv without node", [("hypervisorNodeId", DELETE)], {"hypervisorNodeId"}),
    ("kvm target on a hyperv node", [("targetType", "kvm")], {"hypervisorNodeId"}),
    ("secureboot on generation 1", [("vm.generation", 1)], {"vm.secureboot"}),
    ("two os disks", [("vm.disks[1].purpose", "os")], {"vm.disks", "vm.disks[1].purpose"}),
    ("no os disk", [("vm.disks[0].purpose", "data")], {"vm.disks"}),
    ("no image", [("os.imageId", DELETE)], {"os.imageId"}),
    ("no os section", [("os", DELETE)], {"os.imageId"}),
    ("static without ip", [("network.ip", DELETE)], {"network.ip"}),
    ("static without subnet", [("network.subnet", DELETE)], {"network.subnet"}),
    ("static without gateway", [("network.gateway", DELETE)], set()),
    ("dhcp with addresses", [("network.mode", "dhcp")], {"network.ip", "network.subnet", "network.gateway"}),
    ("join without name", [("domain.name", DELETE)], {"domain.name"}),
    ("join without ou", [("domain.ou", DELETE)], set()),
    ("ou of other domain", [("domain.name", "otherdom.local")], {"domain.ou"}),
    (
        "online without account",
        [("domain.method", "online"), ("domain.serviceAccount", DELETE)],
        {"domain.serviceAccount"},
    ),
    ("account without password", [("domain.serviceAccount.password", DELETE)], {"domain.serviceAccount.password"}),
    ("no hostname", [("hostname", DELETE)], {"hostname"}),
    ("no targetType", [("targetType", DELETE)], {"targetType"}),
]


@pytest.mark.parametrize(("changes", "expected"), [pytest.param(c, e, id=name) for name, c, e in CROSS_FIELD])
def test_cross_field_rules(changes, expected):
    body = changed(static_example(), *changes)
    if not expected:
        assert parse_task_request(body, {}, REFS)
    else:
        assert set(errors_of(body)) == expected


def test_baremetal_needs_mac():
    assert set(errors_of(changed(baremetal_example(), ("macAddress", DELETE)))) == {"macAddress"}


def test_all_errors_reported_at_once():
    body = changed(
        static_example(),
        ("hostname", "-bad"),
        ("targetType", "baremetal"),
        ("vm.cpu", 0),
        ("os.language", "xx"),
        ("network.gateway", "203.0.113.1"),
        ("network.dns[0]", "x"),
        ("domain.name", "yourdom"),
        ("postInstall.runScripts[0].name", ".hidden"),
        ("extra", 1),
    )
    assert set(errors_of(body)) == {
        "hostname",
        "vm",
        "hypervisorNodeId",
        "os.language",
        "network.dns[0]",
        "domain.name",
        "postInstall.runScripts[0].name",
        "extra",
    }


@pytest.mark.parametrize("body", [None, [], "x", 5, [static_example()]])
def test_body_must_be_an_object(body):
    assert errors_of(body) == {"body": "must be a JSON object"}


def test_error_messages_do_not_leak_secrets():
    body = changed(
        static_example(), ("os.adminPassword", "p" * 200), ("os.productKey", "BCDF0-GHJKM-PQRTV-WXY23-46789")
    )
    with pytest.raises(InvalidRequest) as raised:
        parse_task_request(body, {}, REFS)
    assert "ppp" not in str(raised.value)
    assert "GHJKM" not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None or raised.value.__suppress_context__  # no chained inputs


# --- merging template defaults -----------------------------------------------------------

TEMPLATE_DEFAULTS = {
    "vm": {"cpu": 8, "memoryGb": 32, "disks": [{"sizeGb": 127, "purpose": "os"}, {"sizeGb": 50, "purpose": "log"}]},
    "os": {"imageId": 1, "language": "en-US", "timezone": "UTC"},
    "domain": {"join": True, "name": "yourdom.local", "method": "offline"},
    "postInstall": {"addToGroups": [7], "runPackages": [{"packageId": 9}]},
}


def test_merge_request_wins_leaf_by_leaf():
    merged = merge_defaults(TEMPLATE_DEFAULTS, {"vm": {"cpu": 2}, "os": {"language": "de-DE"}})
    assert merged["vm"] == {"cpu": 2, "memoryGb": 32, "disks": TEMPLATE_DEFAULTS["vm"]["disks"]}
    assert merged["os"] == {"imageId": 1, "language": "de-DE", "timezone": "UTC"}
    assert merged["domain"] == TEMPLATE_DEFAULTS["domain"]


def test_merge_replaces_lists():
    merged = merge_defaults(TEMPLATE_DEFAULTS, {"vm": {"disks": [{"sizeGb": 40, "purpose": "os"}]}})
    assert merged["vm"]["disks"] == [{"sizeGb": 40, "purpose": "os"}]
    merged = merge_defaults(TEMPLATE_DEFAULTS, {"postInstall": {"addToGroups": []}})
    assert merged["postInstall"] == {"addToGroups": [], "runPackages": [{"packageId": 9}]}


def test_merge_request_value_replaces_section_of_another_type():
    assert merge_defaults(TEMPLATE_DEFAULTS, {"vm": None})["vm"] is None
    assert merge_defaults({"os": 1}, {"os": {"imageId": 2}})["os"] == {"imageId": 2}


@pytest.mark.parametrize(
    ("request_body", "has_vm"),
    [
        pytest.param({"targetType": "baremetal"}, False, id="baremetal drops vm"),
        pytest.param({"targetType": "hyperv"}, True, id="hyperv keeps vm"),
        pytest.param({}, True, id="no targetType keeps vm"),
    ],
)
def test_merge_baremetal_drops_vm_defaults(request_body, has_vm):
    assert ("vm" in merge_defaults(TEMPLATE_DEFAULTS, request_body)) is has_vm


def test_merge_does_not_mutate_inputs():
    defaults, request = copy.deepcopy(TEMPLATE_DEFAULTS), static_example()
    before = (copy.deepcopy(defaults), copy.deepcopy(request))
    merged = merge_defaults(defaults, request)
    merged["vm"]["disks"].append({"sizeGb": 1, "purpose": "other"})
    merged["os"]["imageId"] = 99
    merge_defaults(defaults, {"targetType": "baremetal"})["postInstall"]["addToGroups"].append(1)
    assert (defaults, request) == before


def test_parse_with_template_defaults():
    body = {"hostname": "SQL02", "targetType": "hyperv", "hypervisorNodeId": 5, "templateId": 3}
    spec = parse_task_request(body, TEMPLATE_DEFAULTS, REFS)
    assert (spec.vm.cpu, spec.vm.memory_gb, len(spec.vm.disks)) == (8, 32, 2)
    assert (spec.os.image_id, spec.os.language, spec.os.timezone) == (1, "en-US", "UTC")
    assert spec.domain.join and spec.domain.name == "yourdom.local"
    assert spec.post_install.add_to_groups == [7]


def test_baremetal_request_with_vm_template():
    body = {"hostname": "SQL03", "targetType": "baremetal", "macAddress": "0015.5d01.0203"}
    spec = parse_task_request(body, TEMPLATE_DEFAULTS, REFS)
    assert spec.vm is None and spec.mac_address == "00:15:5d:01:02:03"


def test_errors_use_request_paths_with_defaults_merged():
    body = {"hostname": "SQL02", "targetType": "hyperv", "hypervisorNodeId": 5, "vm": {"disks": [{"sizeGb": "1"}]}}
    errors = errors_of(body, TEMPLATE_DEFAULTS)
    assert set(errors) == {"vm.disks[0].sizeGb", "vm.disks[0].purpose"}
    errors = errors_of({**body, "vm": {"cpus": 2}, "os": {"image_id": 1}}, TEMPLATE_DEFAULTS)
    assert set(errors) == {"vm.cpus", "os.image_id"}


# --- secrets -----------------------------------------------------------------------------


def test_config_has_no_secrets():
    spec = parse_task_request(static_example(), {}, REFS)
    config = spec.to_config()
    dumped = json.dumps(config)
    for secret in (PRODUCT_KEY, ADMIN_PASSWORD, JOIN_PASSWORD):
        assert secret not in dumped
        assert secret not in repr(spec)
    assert config["os"]["adminPassword"] is None
    assert config["domain"]["serviceAccount"] == {"username": "YOURDOM\\svc-domainjoin", "password": None}
    assert config["macAddress"] == "00:15:5d:01:02:03"


def test_secrets_holds_the_set_ones():
    spec = parse_task_request(static_example(), {}, REFS)
    assert spec.secrets() == {
        "os.adminPassword": ADMIN_PASSWORD,
        "os.productKey": PRODUCT_KEY,
        "domain.serviceAccount.password": JOIN_PASSWORD,
    }
    assert set(spec.secrets()) == {".".join(path) for path in SECRET_PATHS}
    body = changed(dhcp_example(), ("os.adminPassword", DELETE), ("domain.serviceAccount", DELETE))
    assert parse_task_request(body, {}, REFS).secrets() == {"os.productKey": PRODUCT_KEY}


@pytest.mark.parametrize("example", [static_example, dhcp_example, baremetal_example])
def test_config_and_secrets_parse_back_to_the_same_spec(example):
    """A worker rebuilds the spec from the stored config and the decrypted secrets."""
    spec = parse_task_request(example(), {}, REFS)
    config = copy.deepcopy(spec.to_config())
    for path, value in spec.secrets().items():
        *parents, last = path.split(".")
        target = config
        for key in parents:
            target = target[key]
        target[last] = value
    assert parse_task_request(config, {}, REFS) == spec



@pytest.mark.parametrize("example", [static_example, dhcp_example, baremetal_example])
def test_a_stored_task_reads_back_without_changing_its_stored_config(example):
    """``from_stored`` copies only the objects on the secrets' paths: the stored configuration it was given
    still masks every secret afterwards, and the spec has them all."""
    spec = parse_task_request(example(), {}, REFS)
    config = spec.to_config()
    stored = copy.deepcopy(config)
    assert TaskSpec.from_stored(config, spec.secrets(), "windows") == spec
    assert config == stored


# --- any JSON body: a TaskSpec or InvalidRequest, nothing else ---------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


def _leaf_paths(value, prefix=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaf_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaf_paths(item, (*prefix, index))
    yield prefix


EXAMPLE_PATHS = [path for path in _leaf_paths(static_example()) if path]


@st.composite
def mutated_examples(draw):
    """The example with a few of its values (or sections) replaced by arbitrary JSON."""
    body = static_example()
    for path in draw(st.lists(st.sampled_from(EXAMPLE_PATHS), max_size=3)):
        *parents, last = path
        target = body
        try:
            for step in parents:
                target = target[step]
            target[last] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier replacement removed this path
    return body


def _parse_or_invalid(body, defaults):
    try:
        spec = parse_task_request(body, defaults, REFS)
    except InvalidRequest as exc:
        assert exc.errors
        assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in exc.errors.items())
    else:
        assert isinstance(spec, TaskSpec)
        json.dumps(spec.to_config())


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=json_values | mutated_examples(), defaults=st.sampled_from([{}, TEMPLATE_DEFAULTS]))
def test_any_body_gives_spec_or_invalid_request(body, defaults):
    _parse_or_invalid(body, defaults)


# --- templates ---------------------------------------------------------------------------


def template_example() -> dict:
    return {
        "name": "SQL Server 2022",
        "description": "SQL Server on Windows Server 2022",
        "defaultCpu": 8,
        "defaultMemoryGb": 32,
        "defaultDisks": [{"sizeGb": 127, "purpose": "os"}, {"sizeGb": 200, "purpose": "data", "type": "fixed"}],
        "imageId": 1,
        "language": "de-DE",
        "timezone": "W. Europe Standard Time",
        "domainJoin": True,
        "domainName": "yourdom.local",
        "domainOu": "OU=SQL Servers,OU=Servers,DC=yourdom,DC=local",
        "domainJoinMethod": "offline",
        "postInstallPackages": [{"packageId": 8}, {"groupId": 5}],
    }


def test_template_accepted():
    spec = parse_template(template_example(), REFS)
    assert isinstance(spec, TemplateSpec)
    assert spec.default_disks[1].type == "fixed"
    assert spec.post_install_packages[1].group_id == 5


def test_template_defaults_applied():
    spec = parse_template({"name": "  Minimal  "}, REFS)
    assert spec.name == "Minimal"
    assert (spec.default_cpu, spec.default_memory_gb, spec.language, spec.domain_join_method) == (
        4,
        16,
        "de-DE",
        "offline",
    )


INVALID_TEMPLATE_FIELDS = [
    ("name", ""),
    ("name", "a\nb"),
    ("description", "x" * 4001),
    ("defaultCpu", 0),
    ("defaultMemoryGb", "16"),
    ("defaultDisks", [{"sizeGb": 10, "purpose": "data"}]),
    ("defaultDisks[0].sizeGb", 0),
    ("imageId", 7),
    ("language", "xx"),
    ("timezone", "CET"),
    ("domainName", "yourdom"),
    ("domainOu", "OU=x"),
    ("domainOu", "OU=x,DC=other,DC=local"),
    ("domainJoinMethod", "magic"),
    ("postInstallPackages[0]", {"packageId": 8, "groupId": 5}),
    ("postInstallPackages[1]", {}),
    ("postInstallPackages[0].packageId", 0),
    ("defaultCpus", 4),
]


@pytest.mark.parametrize(
    ("path", "value"), INVALID_TEMPLATE_FIELDS, ids=[f"{p}={v!r}"[:60] for p, v in INVALID_TEMPLATE_FIELDS]
)
def test_invalid_template_field(path, value):
    with pytest.raises(InvalidRequest) as raised:
        parse_template(changed(template_example(), (path, value)), REFS)
    assert set(raised.value.errors) == {path}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param([("name", DELETE)], {"name"}, id="name required"),
        pytest.param([("domainName", DELETE), ("domainOu", DELETE)], {"domainName"}, id="join needs name"),
        pytest.param([("domainJoin", False), ("domainName", DELETE)], set(), id="ou without name"),
    ],
)
def test_template_cross_field(changes, expected):
    body = changed(template_example(), *changes)
    if expected:
        with pytest.raises(InvalidRequest) as raised:
            parse_template(body, REFS)
        assert set(raised.value.errors) == expected
    else:
        assert parse_template(body, REFS)


@pytest.mark.parametrize("body", [None, [], "x"])
def test_template_body_must_be_an_object(body):
    with pytest.raises(InvalidRequest) as raised:
        parse_template(body, REFS)
    assert set(raised.value.errors) == {"body"}


def _stored_template(**overrides):
    """What the templates API stores: the TemplateSpec's values, as on octoprov.models.Template."""
    spec = parse_template(template_example(), REFS)
    dumped = spec.model_dump(by_alias=True, mode="json")
    values = {
        "default_cpu": spec.default_cpu,
        "default_memory_gb": spec.default_memory_gb,
        "default_disks": dumped["defaultDisks"],
        "image_id": spec.image_id,
        "language": spec.language,
        "timezone": spec.timezone,
        "domain_join": spec.domain_join,
        "domain_name": spec.domain_name,
        "domain_ou": spec.domain_ou,
        "domain_join_method": spec.domain_join_method,
        "post_install_packages": dumped["postInstallPackages"],
    }
    return SimpleNamespace(**{**values, **overrides})


def test_template_defaults():
    assert template_defaults(_stored_template()) == {
        "vm": {
            "cpu": 8,
            "memoryGb": 32,
            "disks": [
                {"sizeGb": 127, "purpose": "os", "type": "dynamic"},
                {"sizeGb": 200, "purpose": "data", "type": "fixed"},
            ],
        },
        "os": {"imageId": 1, "language": "de-DE", "timezone": "W. Europe Standard Time"},
        "domain": {
            "join": True,
            "name": "yourdom.local",
            "ou": "OU=SQL Servers,OU=Servers,DC=yourdom,DC=local",
            "method": "offline",
        },
        "postInstall": {"runPackages": [{"packageId": 8}], "addToGroups": [5]},
    }


def test_template_defaults_leave_out_unset_values():
    template = _stored_template(
        default_disks=None,
        image_id=None,
        domain_name=None,
        domain_ou=None,
        domain_join=False,
        post_install_packages=None,
    )
    assert template_defaults(template) == {
        "vm": {"cpu": 8, "memoryGb": 32},
        "os": {"language": "de-DE", "timezone": "W. Europe Standard Time"},
        "domain": {"join": False, "method": "offline"},
    }


def test_template_defaults_feed_a_task():
    body = {"hostname": "SQL04", "targetType": "hyperv", "hypervisorNodeId": 5, "templateId": 3}
    spec = parse_task_request(body, template_defaults(_stored_template()), REFS)
    assert spec.vm.cpu == 8
    assert spec.domain.ou == "OU=SQL Servers,OU=Servers,DC=yourdom,DC=local"
    assert [run.package_id for run in spec.post_install.run_packages] == [8]
    assert spec.post_install.add_to_groups == [5]
