"""The provisioning request (``POST /tasks``) and template bodies, validated before anything runs.

A provisioning run takes an hour and fails far from the person who asked for it, so every
mistake that can be seen in the request is reported up front, all at once, each under the
request's own field path (``vm.disks[1].sizeGb``). Field rules come from
``octoprov.validation``; this module adds types, defaults and the rules that tie fields together.

Cross-field rules live in an after-validator of the smallest model holding all the fields
involved. The ``targetType`` rules are field validators instead, so that a mistake elsewhere
in the body does not hide them.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol, TypeGuard

from pydantic import (
    AfterValidator,
    Field,
    GetJsonSchemaHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue

from octoprov.errors import InvalidRequest
from octoprov.models import MAX_ID
from octoprov.packages import PackageLike, validate_parameters
from octoprov.specs import Spec, parse, report, text_errors
from octoprov.targets import registry
from octoprov.targets.registry import TargetType
from octoprov.validation import (
    canonical_mac,
    check_account_name,
    check_display_name,
    check_distinguished_name,
    check_fqdn,
    check_hostname,
    check_ipv4,
    check_language,
    check_linux_user_name,
    check_ou_in_domain,
    check_parameter_name,
    check_password,
    check_product_key,
    check_script_name,
    check_shell_command,
    check_single_line,
    check_ssh_public_key,
    check_static_network,
    check_text,
    check_timezone,
    check_unreserved_variable,
    check_windows_path,
    is_device_name,
    text_problem,
)

SECRET_PATHS = (("os", "adminPassword"), ("os", "productKey"), ("domain", "serviceAccount", "password"))

DEFAULT_LANGUAGE = "de-DE"
DEFAULT_TIMEZONE = "W. Europe Standard Time"


class References(Protocol):
    """Look-ups the caller answers from the database."""

    def image_os_type(self, image_id: int) -> str | None:
        """The image's ``osType`` ("windows", "linux"), or None if there is no such image."""

    def image_indexes(self, image_id: int) -> list[int] | None:
        """The edition indexes a scanned WIM holds; None or empty when not scanned."""

    def template_exists(self, template_id: int) -> bool: ...

    def hypervisor_kind(self, node_id: int) -> str | None:
        """The node's kind, "hyperv" or "kvm", or None if there is no such hypervisor node."""

    def package(self, package_id: int) -> PackageLike | None:
        """The package (its ``name``, ``os_type`` and ``parameters_schema``), or None if there is none."""

    def group_exists(self, group_id: int) -> bool: ...

    def script_os_type(self, name: str) -> str | None:
        """The OS a script of the scripts library is for, or None if the library has no such script."""


# the validation context's flag for a stored task read back (TaskSpec.from_stored)
STORED = "stored"


def _stored(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get(STORED))


def _on_intake(check: Callable[[Any], Any]) -> Callable[[Any, ValidationInfo], Any]:
    """A rule for requests as they arrive, not for a stored task read back: one accepted before the
    rule existed must still run, or be rolled back (which reads the request too)."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        return value if _stored(info) else check(value)

    return validate


def _problem(check: Callable[..., object], *args: Any) -> str | None:
    """The message of the ValueError ``check(*args)`` raises, or None."""
    try:
        check(*args)
    except ValueError as exc:
        return str(exc)
    return None


def _one_os_disk(disks: list[DiskSpec]) -> list[DiskSpec]:
    """Exactly one disk holds the OS; a second one is also named at its ``purpose``."""
    os_disks = [index for index, disk in enumerate(disks) if disk.purpose == "os"]
    if len(os_disks) != 1:
        report(
            {
                (): f"needs exactly one disk with purpose os, found {len(os_disks)}",
                **{(index, "purpose"): "another disk already has purpose os" for index in os_disks[1:]},
            }
        )
    return disks


def _no_duplicates(items: list[int]) -> list[int]:
    seen = set()
    for item in items:
        if item in seen:
            raise ValueError(f"{item} is listed twice")
        seen.add(item)
    return items


def _check_parameter_value(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str):
        return value if _stored(info) else check_text(value, multiline=True)
    if isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise ValueError("must be a string, number or boolean")


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Cpu = Annotated[int, Field(ge=1, le=240)]
MemoryGb = Annotated[int, Field(ge=1, le=12288)]
Language = Annotated[str, AfterValidator(check_language)]
TimeZone = Annotated[str, AfterValidator(check_timezone)]
DisplayName = Annotated[str, AfterValidator(check_display_name)]
Fqdn = Annotated[str, AfterValidator(check_fqdn)]
DistinguishedName = Annotated[str, AfterValidator(check_distinguished_name)]
JoinMethod = Literal["offline", "online"]
# names as package parameters have them: a library script's parameter must not be LD_PRELOAD or $input either
Parameters = dict[
    Annotated[str, AfterValidator(check_parameter_name), AfterValidator(_on_intake(check_unreserved_variable))],
    Annotated[Any, AfterValidator(_check_parameter_value)],
]
Password = Annotated[str, AfterValidator(_on_intake(check_password))]
# free text that ends up in an artifact: one line (a name, a URL), or lines (a command)
Line = Annotated[str, AfterValidator(_on_intake(check_single_line))]
Lines = Annotated[str, AfterValidator(_on_intake(functools.partial(check_text, multiline=True)))]


class DiskSpec(Spec):
    size_gb: Annotated[int, Field(ge=1, le=65536)]
    purpose: Literal["os", "data", "log", "tempdb", "backup", "other"]
    type: Literal["dynamic", "fixed"] = "dynamic"


Disks = Annotated[list[DiskSpec], Field(min_length=1, max_length=64), AfterValidator(_one_os_disk)]


class VmNetworkSpec(Spec):
    vswitch: Annotated[Line, AfterValidator(functools.partial(check_display_name, max_len=255))] | None = None
    vlan: Annotated[int, Field(ge=1, le=4094)] | None = None


class VmSpec(Spec):
    cpu: Cpu = 4
    memory_gb: MemoryGb = 16
    generation: Annotated[int, Field(ge=1, le=2)] = 2
    secureboot: bool | None = None  # None: on for generation 2, off for generation 1
    disks: Disks
    network: VmNetworkSpec = Field(default_factory=VmNetworkSpec)
    storage_path: Annotated[str, AfterValidator(_on_intake(check_windows_path))] | None = None

    @model_validator(mode="after")
    def _secureboot_needs_uefi(self) -> VmSpec:
        if self.secureboot is None:
            self.secureboot = self.generation == 2
        elif self.secureboot and self.generation == 1:
            report({"secureboot": "needs generation 2: generation 1 VMs boot from BIOS"})
        return self


class OsSpec(Spec):
    image_id: Id
    image_index: Id | None = None
    language: Language = DEFAULT_LANGUAGE
    timezone: TimeZone = DEFAULT_TIMEZONE
    product_key: Annotated[str, AfterValidator(check_product_key)] | None = Field(None, repr=False)
    admin_password: Annotated[Password, Field(min_length=1, max_length=127)] | None = Field(None, repr=False)
    # cloud images only (cloud-init creates this account): without a name, "admin"
    admin_username: Annotated[str, AfterValidator(check_linux_user_name)] | None = None
    ssh_authorized_keys: Annotated[
        list[Annotated[str, AfterValidator(check_ssh_public_key)]], Field(max_length=32)
    ] = Field(default_factory=list)


class NetworkSpec(Spec):
    mode: Literal["dhcp", "static"] = "dhcp"
    ip: str | None = None
    subnet: str | None = None
    gateway: str | None = None
    dns: Annotated[list[Annotated[str, AfterValidator(check_ipv4)]], Field(max_length=4)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _addresses_match_mode(self) -> NetworkSpec:
        given = {"ip": self.ip, "subnet": self.subnet, "gateway": self.gateway}
        if self.mode == "dhcp":
            errors = {name: "not allowed when mode is dhcp" for name, value in given.items() if value is not None}
        elif self.ip is None or self.subnet is None:
            errors = {name: "required when mode is static" for name in ("ip", "subnet") if given[name] is None}
        else:
            errors = check_static_network(self.ip, self.subnet, self.gateway)
        report(errors)
        return self


class ServiceAccountSpec(Spec):
    username: Annotated[Line, AfterValidator(check_account_name)]
    password: Annotated[Password, Field(min_length=1, max_length=256)] = Field(repr=False)


class DomainSpec(Spec):
    """When ``join`` is false the other fields are kept (templates carry them) but not checked."""

    join: bool = False
    name: Line | None = None
    ou: Line | None = None
    method: JoinMethod = "offline"
    service_account: ServiceAccountSpec | None = None

    @model_validator(mode="after")
    def _join_needs_domain(self, info: ValidationInfo) -> DomainSpec:
        if not self.join or _stored(info):  # a stored task's domain was checked when it was accepted
            return self
        errors = {"name": "required when join is true" if self.name is None else _problem(check_fqdn, self.name)}
        if self.ou is not None:
            errors["ou"] = _problem(check_distinguished_name, self.ou)
            if errors["ou"] is None and errors["name"] is None:
                errors["ou"] = _problem(check_ou_in_domain, self.ou, self.name)
        if self.method == "online" and self.service_account is None:
            errors["serviceAccount"] = "required when method is online"
        report(errors)
        return self


class PackageRun(Spec):
    package_id: Id
    parameters: Parameters = Field(default_factory=dict)


class ScriptRun(Spec):
    name: Annotated[str, AfterValidator(check_script_name)]
    parameters: Parameters = Field(default_factory=dict)


class PostInstallSpec(Spec):
    install_agent: bool = True
    retries: int = Field(default=2, ge=0, le=10, description="Attempts after the first for an item that may be "
                                                            "repeated safely (the agent, idempotent packages)")
    on_failure: Literal["keep", "rollback"] = Field(
        default="keep", description="When an item fails for good: keep the installed machine (the task fails at "
                                    "that step) or roll everything back")
    add_to_groups: Annotated[list[Id], AfterValidator(_no_duplicates)] = Field(default_factory=list)
    run_packages: list[PackageRun] = Field(default_factory=list)
    run_scripts: list[ScriptRun] = Field(default_factory=list)
    # cloud images only: shell commands cloud-init runs in order at first boot
    run_commands: Annotated[
        list[Annotated[Lines, AfterValidator(check_shell_command)]], Field(max_length=64)
    ] = Field(default_factory=list)


class TaskOptions(Spec):
    """Per-task behaviour: keep a failed VM for inspection, and which URLs to tell when the task ends."""

    @staticmethod
    def _check_webhook_url(url: str) -> str:
        """Refuse what the worker could not POST to, or should not: other schemes (file://,
        ftp://), relative URLs, URLs without a host, spaces and control characters."""
        from urllib.parse import urlsplit

        if len(url) > 2000:
            raise ValueError("must be at most 2000 characters long")
        if any(char.isspace() or ord(char) < 32 or ord(char) == 127 for char in url):
            raise ValueError("must not contain spaces or control characters")
        try:
            parts = urlsplit(url)
        except ValueError:
            raise ValueError("is not a valid URL") from None
        try:
            parts.port  # noqa: B018  # raises for a port that is not a number from 0 to 65535
        except ValueError:
            raise ValueError("has an invalid port") from None
        if not parts.scheme:
            raise ValueError("must be an absolute URL starting with http:// or https://")
        if parts.scheme.lower() not in ("http", "https"):
            raise ValueError(f"must use http:// or https://, not {parts.scheme}://")
        if not parts.hostname:
            raise ValueError("must name a host (http://host/...)")
        return url

    keep_vm_on_failure: bool = False
    boot_method: Literal["pxe", "virtualMedia"] | None = Field(
        None, description="Bare metal: boot the installer from the network (pxe) or from the BMC's virtual CD "
        "(virtualMedia: no DHCP boot options or TFTP). Default: the machine's bootMethod")
    webhooks: Annotated[
        list[Annotated[Line, AfterValidator(_check_webhook_url)]], Field(max_length=5)
    ] = Field(default_factory=list)


# the target-dependent fields: a VM target needs a node and a vm section, a machine target (known by its
# MAC) needs the MAC and refuses both
_TARGET_FIELDS = ("hypervisor_node_id", "vm", "mac_address")


def _needed(field_name: str, target: TargetType) -> bool:
    return (field_name == "mac_address") != target.makes_vms


def _refused(field_name: str, target: TargetType) -> bool:
    return field_name != "mac_address" and not target.makes_vms


def _known_target(name: str) -> str:
    if registry.find(name) is None:
        raise ValueError(f"must be one of {', '.join(registry.names())}")
    return name


class _TargetTypeSchema:
    """The OpenAPI enum of ``targetType``: the target types registered when the document is made."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["enum"] = list(registry.names())
        return schema


TargetTypeName = Annotated[str, AfterValidator(_known_target), _TargetTypeSchema()]


class TaskSpec(Spec):
    """A provisioning request, merged with its template's defaults."""

    hostname: str
    target_type: TargetTypeName
    hypervisor_node_id: Id | None = None
    mac_address: Annotated[str, AfterValidator(canonical_mac)] | None = None
    template_id: Id | None = None
    # kept in the task's column, not in its configuration
    site_id: Id | None = Field(None, exclude=True, description=(
        "The site the task runs at (its steps on the site's workers, its machine booting from the site's edge). "
        "Default: its node's or machine's site"))
    vm: VmSpec | None = None
    os_disk_gb: Annotated[int, Field(ge=1, le=65536)] | None = Field(
        None, description="Bare metal: the OS disk the install needs, in GB (a VM's is in vm.disks; a template's "
        "OS disk applies). Refused when the machine's BMC reports no disk that large; a Linux install takes the "
        "first fixed disk at least that large")
    os: OsSpec = Field(default_factory=dict, validate_default=True)  # imageId is required
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    domain: DomainSpec = Field(default_factory=DomainSpec)
    post_install: PostInstallSpec = Field(default_factory=PostInstallSpec)
    options: TaskOptions = Field(default_factory=TaskOptions)

    @field_validator("hostname")
    @classmethod
    def _hostname_fits_os(cls, value: str, info: ValidationInfo) -> str:
        """The OS type comes from the image, looked up by the caller and passed as context."""
        context = info.context if isinstance(info.context, dict) else {}
        if _stored(info):  # checked when the task was accepted, perhaps by fewer rules than today's
            return value
        return check_hostname(value, context.get("os_type") or "windows")

    @model_validator(mode="after")
    def _hostname_fits_hyperv(self, info: ValidationInfo) -> TaskSpec:
        """Hyper-V makes a folder named after the VM, which Windows cannot do for a device name such as
        CON, whatever OS the VM runs (a Windows one is refused by its hostname rule already)."""
        if not _stored(info) and self.target_type == "hyperv" and is_device_name(self.hostname):
            report({"hostname": f"{self.hostname} is a device name to Windows: Hyper-V cannot make the VM's folder"})
        return self

    @model_validator(mode="before")
    @classmethod
    def _absent_means_null(cls, data: Any) -> Any:
        """Spell out the target-dependent fields a body leaves out, so that their validator
        runs and reports under the camelCase name (a validated default is reported under
        the Python name)."""
        if not isinstance(data, dict):
            return data
        absent = [name for name in _TARGET_FIELDS if name not in data and to_camel(name) not in data]
        return {**data, **{to_camel(name): None for name in absent}}

    @field_validator("hypervisor_node_id", "mac_address", "vm", mode="before")
    @classmethod
    def _fits_target_type(cls, value: Any, info: ValidationInfo) -> Any:
        target = registry.find(info.data.get("target_type"))
        if target is None:  # targetType itself is wrong; that error is reported
            return value
        assert info.field_name is not None  # always set for a field validator
        if value is None and _needed(info.field_name, target):
            raise ValueError(f"required when targetType is {target.name}")
        if value is not None and _refused(info.field_name, target):
            raise ValueError(f"not allowed when targetType is {target.name}")
        return value

    @field_validator("os_disk_gb")
    @classmethod
    def _os_disk_is_bare_metals(cls, value: int | None, info: ValidationInfo) -> int | None:
        target = registry.find(info.data.get("target_type"))
        if value is not None and target is not None and target.makes_vms:
            raise ValueError(f"not allowed when targetType is {target.name}: a VM's OS disk is in vm.disks")
        return value

    def to_config(self) -> dict[str, Any]:
        """The effective configuration as camelCase JSON, secrets set to None."""
        config = self.model_dump(mode="json", by_alias=True)
        for path in SECRET_PATHS:
            parent = _lookup(config, path[:-1])
            if isinstance(parent, dict) and path[-1] in parent:
                parent[path[-1]] = None
        return config

    @classmethod
    def from_stored(cls, config: dict[str, Any], secrets: dict[str, str], os_type: str | None) -> TaskSpec:
        """The request a task was accepted with, read back from its stored configuration (where
        secrets are masked) with its decrypted ``secrets`` put back in their places. Drivers, answer
        files and the dry run read this typed request, never the raw JSON. Only the objects on a secret's
        path are copied, not the whole configuration (every step reads one): ``config`` stays as it was."""
        data = dict(config)
        for path in SECRET_PATHS:
            parent = data
            for key in path[:-1]:
                child = parent.get(key)
                if not isinstance(child, dict):
                    break
                parent[key] = dict(child)
                parent = parent[key]
            else:
                if path[-1] in parent:
                    parent[path[-1]] = secrets.get(".".join(path))
        return cls.model_validate(data, context={"os_type": os_type, STORED: True})

    def secrets(self) -> dict[str, str]:
        """The secrets that are set, keyed by field path: ``{"os.adminPassword": ...}``."""
        dumped = self.model_dump(mode="json", by_alias=True)
        values = {".".join(path): _lookup(dumped, path) for path in SECRET_PATHS}
        return {path: value for path, value in values.items() if value is not None}


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def merge_defaults(defaults: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge a template's defaults under a request: the request wins leaf by leaf,
    lists are replaced whole. A baremetal request drops the defaults' ``vm`` section,
    since templates are shared between VM and bare-metal targets, keeping its OS disk's size
    as ``osDiskGb``."""
    target = registry.find(request.get("targetType", defaults.get("targetType")))
    if target is not None and not target.makes_vms:
        os_disks = [disk.get("sizeGb") for disk in (defaults.get("vm") or {}).get("disks") or []
                    if isinstance(disk, dict) and disk.get("purpose") == "os"]
        defaults = {key: value for key, value in defaults.items() if key != "vm"}
        if os_disks:  # the template's OS disk is what the machine's must hold
            defaults["osDiskGb"] = os_disks[0]
    return copy.deepcopy(_merge(defaults, request))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Shallow: the result shares its leaves with the inputs."""
    merged = dict(base)
    for key, value in override.items():
        both_dicts = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merge(base[key], value) if both_dicts else value
    return merged


def _is_id(value: object) -> TypeGuard[int]:
    return type(value) is int and 1 <= value <= MAX_ID


def _check_references(request: dict[str, Any], refs: References) -> tuple[str | None, dict[str, str]]:
    """Look up the ids in the raw request; return the image's OS type and the errors."""
    errors = {}
    os_type = None
    image_id = _lookup(request, ("os", "imageId"))
    if _is_id(image_id):
        os_type = refs.image_os_type(image_id)
        if os_type is None:
            errors["os.imageId"] = f"no image with id {image_id}"
        index, known = _lookup(request, ("os", "imageIndex")), refs.image_indexes(image_id)
        if known and _is_id(index) and index not in known:
            errors["os.imageIndex"] = f"image {image_id} has editions {', '.join(map(str, known))}, not {index}"
    template_id = request.get("templateId")
    if _is_id(template_id) and not refs.template_exists(template_id):
        errors["templateId"] = f"no template with id {template_id}"
    node_id = request.get("hypervisorNodeId")
    target = registry.find(request.get("targetType"))
    if _is_id(node_id) and target is not None and target.makes_vms:
        kind = refs.hypervisor_kind(node_id)
        if kind is None:
            errors["hypervisorNodeId"] = f"no hypervisor node with id {node_id}"
        elif kind not in target.node_kinds:
            errors["hypervisorNodeId"] = f"node {node_id} is a {kind} host, but targetType is {target.name}"
    errors.update(_check_post_install(request.get("postInstall"), os_type, refs))
    return os_type, errors


def _items(section: dict[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    entries = section.get(key)
    if not isinstance(entries, list):
        return []
    return [(index, entry) for index, entry in enumerate(entries) if isinstance(entry, dict)]


def _check_post_install(section: object, os_type: str | None, refs: References) -> dict[str, str]:
    """The groups, packages and library scripts ``postInstall`` names exist, suit the image's OS, and
    each package gets the parameters its schema declares. Malformed entries are left to the model."""
    if not isinstance(section, dict):
        return {}
    errors = {}
    groups = section.get("addToGroups")
    for index, group_id in enumerate(groups if isinstance(groups, list) else []):
        if _is_id(group_id) and not refs.group_exists(group_id):
            errors[f"postInstall.addToGroups[{index}]"] = f"no group with id {group_id}"
    for index, run in _items(section, "runPackages"):
        where, package_id = f"postInstall.runPackages[{index}]", run.get("packageId")
        package = refs.package(package_id) if _is_id(package_id) else None
        if package is None:
            if _is_id(package_id):
                errors[f"{where}.packageId"] = f"no package with id {package_id}"
            continue
        if os_type and package.os_type != os_type:
            errors[f"{where}.packageId"] = f"package {package.name} is for {package.os_type}, the image is {os_type}"
        try:
            validate_parameters(package, run.get("parameters", {}), f"{where}.parameters")
        except InvalidRequest as invalid:
            errors.update(invalid.errors)
    for index, run in _items(section, "runScripts"):
        name = run.get("name")
        if not isinstance(name, str) or _problem(check_script_name, name):
            continue
        script_os = refs.script_os_type(name)
        if script_os is None:
            errors[f"postInstall.runScripts[{index}].name"] = (
                f"no script {name} in the scripts library (OCTOPROV_SCRIPTS_DIR: .ps1 for Windows, .sh for Linux)")
        elif os_type and script_os != os_type:
            errors[f"postInstall.runScripts[{index}].name"] = f"{name} is a {script_os} script, the image is {os_type}"
    return errors


# free text that may span lines: a cloud-init command, a package's or script's parameter value
_MULTILINE = re.compile(r"postInstall\.(?:runCommands\[\d+\]|run(?:Packages|Scripts)\[\d+\]\.parameters\.\w+)")


def _text_problem(path: str, text: str) -> str | None:
    """Every string of a request ends up in a file a machine reads (XML, cmd, PowerShell, sh, YAML,
    iPXE) or in the database: control characters, lone surrogates and U+FFFE/U+FFFF are refused in
    all of them, whichever field holds them, unknown fields and ignored ones included."""
    return text_problem(text, multiline=bool(_MULTILINE.fullmatch(path)))


def parse_task_request(body: object, defaults: dict[str, Any], refs: References) -> TaskSpec:
    """Merge ``body`` over ``defaults`` and validate the result; raise InvalidRequest with every error."""
    if not isinstance(body, dict):
        raise InvalidRequest({"body": "must be a JSON object"})
    merged = merge_defaults(defaults, body)
    os_type, errors = _check_references(merged, refs)
    text = text_errors(merged, _text_problem)
    try:
        spec = parse(TaskSpec, merged, errors, context={"os_type": os_type})
    except InvalidRequest as invalid:
        raise InvalidRequest({**text, **invalid.errors}) from None  # a field's own rule says more, where it has one
    if text:
        raise InvalidRequest(text)
    return spec


class TemplatePackage(Spec):
    """A template's post-install entry: one package, or one group to join."""

    package_id: Id | None = None
    group_id: Id | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TemplatePackage:
        if (self.package_id is None) == (self.group_id is None):
            raise ValueError("give exactly one of packageId or groupId")
        return self


class TemplateSpec(Spec):
    """A template body (``POST /templates``): defaults shared by the tasks made from it."""

    name: DisplayName
    description: Annotated[str, Field(max_length=4000)] | None = None
    default_cpu: Cpu = 4
    default_memory_gb: MemoryGb = 16
    default_disks: Disks | None = None
    image_id: Id | None = None
    language: Language = DEFAULT_LANGUAGE
    timezone: TimeZone = DEFAULT_TIMEZONE
    domain_join: bool = False
    domain_name: Fqdn | None = None
    domain_ou: DistinguishedName | None = None
    domain_join_method: JoinMethod = "offline"
    post_install_packages: list[TemplatePackage] | None = None

    @model_validator(mode="after")
    def _domain_consistent(self) -> TemplateSpec:
        errors: dict[str, str | None] = {}
        if self.domain_join and self.domain_name is None:
            errors["domainName"] = "required when domainJoin is true"
        if self.domain_ou and self.domain_name:
            errors["domainOu"] = _problem(check_ou_in_domain, self.domain_ou, self.domain_name)
        report(errors)
        return self


def parse_template(body: object, refs: References) -> TemplateSpec:
    """Validate a template body, including that its image exists."""
    errors = {}
    image_id = body.get("imageId") if isinstance(body, dict) else None
    if _is_id(image_id) and refs.image_os_type(image_id) is None:
        errors["imageId"] = f"no image with id {image_id}"
    return parse(TemplateSpec, body, errors)


def template_defaults(t: Any) -> dict[str, Any]:
    """The request-shaped (camelCase) defaults a template contributes to a task."""

    def present(section: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in section.items() if value is not None}

    entries = t.post_install_packages or []
    packages = [{"packageId": e["packageId"]} for e in entries if e.get("packageId") is not None]
    groups = list(dict.fromkeys(e["groupId"] for e in entries if e.get("groupId") is not None))
    defaults = {
        "vm": present(
            {"cpu": t.default_cpu, "memoryGb": t.default_memory_gb, "disks": copy.deepcopy(t.default_disks) or None}
        ),
        "os": present({"imageId": t.image_id, "language": t.language, "timezone": t.timezone}),
        "domain": present(
            {"join": t.domain_join, "name": t.domain_name, "ou": t.domain_ou, "method": t.domain_join_method}
        ),
        "postInstall": present({"runPackages": packages or None, "addToGroups": groups or None}),
    }
    return {section: values for section, values in defaults.items() if values}
