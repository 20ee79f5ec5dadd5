"""Target types, each declared once: the only place that lists them.

A target type says what it is called, which worker pool runs its steps, whether it makes VMs
(on a hypervisor node) or installs a machine known by its MAC, which node kinds serve it, whether
it boots Linux cloud images, and how to build its drivers, its inventory and its dry-run
artifacts. The API's validation, the UI's forms, the Celery queues and the dry run all read
this registry, so a new target is one ``register(...)`` call.

The declarations name their code by import path and load it when first used: the domain
modules that read the registry (validation, steps) never import a driver, and drivers may
import the domain freely without forming a cycle.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from octoprov.context import NodeInfo, TaskContext
    from octoprov.models import Task
    from octoprov.specs import Spec
    from octoprov.targets.base import InventoryInterface, Target

DEFAULT_QUEUE = "default"
SITE_SEPARATOR = "@"  # kvm@branch1: the kvm pool of site branch1

Planner = Callable[["TaskContext"], tuple[dict[str, str], list[str]]]


def lazy(path: str) -> Callable[..., Any]:
    """A callable standing for ``module:attribute``, imported on its first call."""
    module_name, _, attribute = path.partition(":")

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module_name), attribute)(*args, **kwargs)

    call.__qualname__ = call.__name__ = path
    return call


def ref(path: str) -> Callable[[], Any]:
    """``module:attribute`` itself (a class, a constant), imported when first asked for."""
    module_name, _, attribute = path.partition(":")

    def load() -> Any:
        return getattr(importlib.import_module(module_name), attribute)

    load.__qualname__ = load.__name__ = path
    return load


def vm_secure_boot(session: Session, task: Task) -> bool:
    """A VM boots with Secure Boot when its task asks for it (``vm.secureboot``, on by default for generation 2)."""
    return bool(((task.config or {}).get("vm") or {}).get("secureboot"))


def no_artifacts(ctx: TaskContext) -> tuple[dict[str, str], list[str]]:
    """The dry-run planner of a target that hands nothing of its own to the machine."""
    return {}, []


@dataclass(frozen=True)
class TargetType:
    """One kind of target. ``node_kinds`` are the kinds of hypervisor node a VM target runs on (a
    machine target's nodes are its bare-metal machines). ``hardware_model`` is the (manufacturer,
    product) its VMs report by generation, for driver-pack matching. ``serves_answers`` is false for a
    target whose machines fetch no answer files (the fake one), where an answer file that cannot be
    made is only reported."""

    name: str
    label: str
    queue: str
    makes_vms: bool
    driver: Callable[[], Target]
    node_kinds: tuple[str, ...] = ()
    cloud_images: bool = False
    serves_answers: bool = True
    inventory: Callable[[NodeInfo], InventoryInterface] | None = None
    plan: Planner = no_artifacts
    hardware_model: Callable[[int], tuple[str | None, str | None]] | None = None
    virtio: Callable[[dict[str, Any]], bool] | None = None  # from the node's options: VirtIO disks and NICs
    # a node's registration: the model of its options object (named after its kind: ``"kvm": {...}``), and the
    # check of its endpoint and credentials, which reports what does not fit through octoprov.specs.report
    node_options: Callable[[], type[Spec]] | None = None
    check_node: Callable[[Any], None] | None = None
    # whether Octoprov controls the machine's boot order (network first to install): a task then puts the
    # OS disk first once the OS is installed (the ``boot_from_disk`` step, the boot driver's ``boot_from_disk``)
    boot_order: bool = False
    # whether a task's machine boots with Secure Boot on: ProxyDHCP then hands its firmware the signed chain
    secure_boot: Callable[[Session, Task], bool] = vm_secure_boot
    # whether the target can turn Secure Boot on after an installation with it off (octoprov/secureboot.py):
    # its boot driver's ``enable_secure_boot``, run while the machine is off
    secure_boot_after_install: bool = False
    # from a node's options: its tasks boot Microsoft-signed installation media (Secure Boot can stay on)
    boots_signed_media: Callable[[dict[str, Any]], bool] | None = None


_TYPES: dict[str, TargetType] = {}


def register(target: TargetType) -> TargetType:
    """Add a target type (a second one of the same name replaces the first)."""
    _TYPES[target.name] = target
    return target


def unregister(name: str) -> None:
    _TYPES.pop(name, None)


def get(name: str) -> TargetType:
    """The declaration of a known target type; KeyError for any other name."""
    return _TYPES[name]


def find(name: object) -> TargetType | None:
    """The declaration named by ``name``, or None for an unknown name or anything but a string."""
    return _TYPES.get(name) if isinstance(name, str) else None


def names() -> tuple[str, ...]:
    return tuple(_TYPES)


def all_types() -> tuple[TargetType, ...]:
    return tuple(_TYPES.values())


def vm_target_names() -> tuple[str, ...]:
    return tuple(t.name for t in _TYPES.values() if t.makes_vms)


def answering_target_names() -> tuple[str, ...]:
    """Targets whose machines fetch answers (boot scripts, answer files): all but the fake one."""
    return tuple(t.name for t in _TYPES.values() if t.serves_answers)


def machine_target_names() -> tuple[str, ...]:
    """Targets that install a machine known by its MAC rather than a VM they create."""
    return tuple(t.name for t in _TYPES.values() if not t.makes_vms)


def cloud_image_target_names() -> tuple[str, ...]:
    return tuple(t.name for t in _TYPES.values() if t.cloud_images)


def node_kinds() -> tuple[str, ...]:
    """Every kind of hypervisor node some VM target runs on."""
    return tuple(dict.fromkeys(kind for t in _TYPES.values() if t.makes_vms for kind in t.node_kinds))


def queues() -> tuple[str, ...]:
    """The Celery queues: ``default`` first, then each target's pool."""
    return tuple(dict.fromkeys([DEFAULT_QUEUE, *(t.queue for t in _TYPES.values())]))


def queue_for(name: str, site: str | None = None) -> str:
    """The queue a task of target type ``name`` at ``site`` runs its steps on: its pool's, or ``<pool>@<site>``
    where the site's workers take it (no site: the central pools)."""
    target = _TYPES.get(name)
    return site_queue(target.queue if target else DEFAULT_QUEUE, site)


def site_queue(pool: str, site: str | None) -> str:
    """A pool's queue at ``site`` (None: the central one)."""
    return f"{pool}{SITE_SEPARATOR}{site}" if site else pool


def site_queues(site: str | None, pools: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The queues of ``pools`` (default: all) at ``site``: what ``octoprov worker --site`` consumes."""
    return tuple(site_queue(pool, site) for pool in (pools or queues()))


def labels() -> dict[str, str]:
    return {t.name: t.label for t in _TYPES.values()}


def inventory_target(kind: str) -> TargetType | None:
    """The VM target whose nodes are of this kind and which can list their inventory."""
    return next((t for t in _TYPES.values() if kind in t.node_kinds and t.inventory is not None), None)


def node_target(kind: str) -> TargetType | None:
    """The VM target that declares how nodes of this kind are registered."""
    return next((t for t in _TYPES.values() if kind in t.node_kinds and t.check_node is not None), None)


def node_option_models() -> dict[str, type[Spec]]:
    """The options object of each node kind, by kind: the fields of a node's registration."""
    models: dict[str, type[Spec]] = {}
    for target in _TYPES.values():
        if target.node_options is not None:
            for kind in target.node_kinds:
                models.setdefault(kind, target.node_options())
    return models


def _kvm_virtio(node_options: dict[str, Any]) -> bool:
    return bool((node_options.get("kvm") or {}).get("virtioDrivers", True))


register(TargetType(
    name="hyperv", label="Hyper-V", queue="hyperv", makes_vms=True, node_kinds=("hyperv",),
    driver=lazy("octoprov.targets.hyperv:hyperv_target"),
    boot_order=True,
    secure_boot_after_install=True,
    boots_signed_media=lazy("octoprov.targets.hyperv.options:boots_install_media"),
    inventory=lazy("octoprov.targets.hyperv.inventory:inventory_for_node"),
    plan=lazy("octoprov.targets.hyperv.dryrun:plan_artifacts"),
    hardware_model=lazy("octoprov.drivers:hyperv_model"),
    node_options=ref("octoprov.targets.hyperv.options:HyperVOptions"),
    check_node=lazy("octoprov.targets.hyperv.options:check_node"),
))
register(TargetType(
    name="kvm", label="KVM", queue="kvm", makes_vms=True, node_kinds=("kvm",), cloud_images=True,
    driver=lazy("octoprov.targets.libvirt:kvm_target"),
    boot_order=True,
    secure_boot_after_install=True,
    boots_signed_media=lazy("octoprov.targets.libvirt.options:boots_install_media"),
    inventory=lazy("octoprov.targets.libvirt.inventory:inventory_for_node"),
    plan=lazy("octoprov.targets.libvirt.dryrun:plan_artifacts"),
    hardware_model=lazy("octoprov.drivers:kvm_model"),
    virtio=_kvm_virtio,
    node_options=ref("octoprov.targets.libvirt.options:KvmOptions"),
    check_node=lazy("octoprov.targets.libvirt.options:check_node"),
))
register(TargetType(
    name="vmware", label="VMware vSphere", queue="vmware", makes_vms=True, node_kinds=("vsphere",),
    driver=lazy("octoprov.targets.vmware:vmware_target"),
    boot_order=True,
    secure_boot_after_install=True,
    inventory=lazy("octoprov.targets.vmware.inventory:inventory_for_node"),
    plan=lazy("octoprov.targets.vmware.dryrun:plan_artifacts"),
    node_options=ref("octoprov.targets.vmware.options:VsphereOptions"),
    check_node=lazy("octoprov.targets.vmware.options:check_node"),
))
register(TargetType(
    name="baremetal", label="Bare metal", queue="baremetal", makes_vms=False,
    driver=lazy("octoprov.targets.baremetal:baremetal_target"),
    boot_order=True,
    secure_boot=lazy("octoprov.machines:task_secure_boot"),
    secure_boot_after_install=True,
    boots_signed_media=lazy("octoprov.targets.virtualmedia:boots_signed_media"),
))
register(TargetType(
    name="fake", label="Fake (no hardware)", queue=DEFAULT_QUEUE, makes_vms=True, node_kinds=("fake",),
    cloud_images=True,  # the fake target simulates any machine
    serves_answers=False,
    driver=lazy("octoprov.targets.fake:fake_target"),
    inventory=lazy("octoprov.targets.fake:inventory_for_node"),
    node_options=ref("octoprov.targets.fake:FakeOptions"),
    check_node=lazy("octoprov.targets.fake:check_node"),
))


def target_for(name: str) -> Target:
    """The drivers of a target type, built by its declaration."""
    from octoprov.errors import NotAvailable

    target = _TYPES.get(name)
    if target is None:
        raise NotAvailable(f"the {name} target driver is not available in this version")
    return target.driver()
