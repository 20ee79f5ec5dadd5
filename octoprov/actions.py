"""What each work step does: a table from step name to the action that runs it.

An action calls the target's drivers and records what they produced (the machine's id and MAC,
the offline-join blob); it returns the step's detail line. The Celery task that runs a step only
claims it, looks its action up here, calls it and records the outcome, so the worker package
holds no provisioning logic and a new step is one entry in this table.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import BindParameter, Integer, Select, Update, bindparam, select, update
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import aliased

from octoprov import states, steps
from octoprov.answerfiles.files import check_task_files
from octoprov.context import TaskContext
from octoprov.errors import PermanentError
from octoprov.models import Task
from octoprov.postinstall.membership import add_to_groups, register_with_octofleet
from octoprov.results import ensure_result_node
from octoprov.targets.base import Machine, Target

Action = Callable[[Target, TaskContext], str]


def _mac_holder() -> Select[int]:
    """The other active task that holds a MAC (``b_mac``) already, if any: built once, read alone when the record
    below was refused, and the condition of that record itself."""
    other = aliased(states.TASKS)
    return select(other.c.id).where(other.c.mac_address == bindparam("b_mac", type_=states.TASKS.c.mac_address.type),
                                    other.c.id != bindparam("b_task_id", type_=Integer),
                                    other.c.status.in_(states.ACTIVE))


_MAC_HOLDER = _mac_holder()


def _record_machine_statement() -> Update:
    """Store a machine on its task unless another active task holds its MAC: one conditional UPDATE."""
    task_id: BindParameter[int] = bindparam("b_task_id", type_=Integer)
    return (update(states.TASKS).where(states.TASKS.c.id == task_id, ~_MAC_HOLDER.exists())
            .values(machine_ref=bindparam("b_ref"), mac_address=bindparam("b_mac")).returning(states.TASKS.c.id))


_RECORD_MACHINE = _record_machine_statement()


def record_machine(ctx: TaskContext, machine: Machine) -> None:
    """Store the machine on its task. A MAC belongs to one active task: two tasks booting one
    network card would hand each other's answers out, so the second is refused."""
    params = {"b_task_id": ctx.task_id, "b_mac": machine.mac_address, "b_ref": machine.ref}
    with ctx.database.alone() as connection:  # one statement; the refusal's read only names the holder
        if connection.execute(_RECORD_MACHINE, params).first() is not None:
            return
        clash = connection.execute(_MAC_HOLDER, params).scalar()
    if clash is not None:
        raise PermanentError(f"MAC {machine.mac_address} is already registered to task {clash}")
    raise NoResultFound(f"no task {ctx.task_id}")


def create_machine(target: Target, ctx: TaskContext) -> str:
    machine = target.compute.create_machine(ctx)
    record_machine(ctx, machine)
    return machine.detail


def prepare_domain_join(target: Target, ctx: TaskContext) -> str:
    """Create the computer account once: a repeated step finds the blob already stored."""
    with ctx.database.session() as session:
        if session.get_one(Task, ctx.task_id).domain_join_blob:
            return "Offline domain join blob already prepared"
    blob = target.domain.provision_offline_join(ctx)
    with ctx.database.session() as session:
        session.get_one(Task, ctx.task_id).domain_join_blob = ctx.vault.encrypt(blob)
    return f"Computer account {ctx.hostname} created in {ctx.spec.domain.name}; blob stored encrypted"


def render_answers(target: Target, ctx: TaskContext) -> str:
    with ctx.database.alone() as connection:  # reads only
        return check_task_files(connection, ctx)


def register_mac(target: Target, ctx: TaskContext) -> str:
    return f"{target.boot.prepare_boot(ctx)} for {ctx.mac_address}"


def power_on(target: Target, ctx: TaskContext) -> str:
    return target.power.power_on(ctx)


def boot_from_disk(target: Target, ctx: TaskContext) -> str:
    return target.boot.boot_from_disk(ctx)


def enable_secure_boot(target: Target, ctx: TaskContext) -> str:
    return target.boot.enable_secure_boot(ctx)


def join_groups(target: Target, ctx: TaskContext) -> str:
    return add_to_groups(ctx)


def finish(target: Target, ctx: TaskContext) -> str:
    with ctx.database.session() as session:
        node = ensure_result_node(session, ctx.task_id, ctx.spec.os.image_id)
    ready = f"Machine ready: node {node.id} ({node.name})"
    fleet = register_with_octofleet(ctx)
    return f"{ready}; {fleet}" if fleet else ready


ACTIONS: dict[str, Action] = {
    "create_vm": create_machine,
    "register_machine": create_machine,
    "prepare_domain_join": prepare_domain_join,
    "render_answers": render_answers,
    "register_mac": register_mac,
    "power_on": power_on,
    "boot_from_disk": boot_from_disk,
    "enable_secure_boot": enable_secure_boot,
    "add_to_groups": join_groups,
    "finish": finish,
}


def run_action(name: str, target: Target, ctx: TaskContext) -> str:
    """Run the work step ``name``: a fixed action, else a post-install item (the agent, a package, a
    script) run by the target on the installed machine."""
    action = ACTIONS.get(name)
    if action is not None:
        return action(target, ctx)
    item = steps.post_install_item(ctx.spec, name)
    if item is None:
        raise PermanentError(f"no action is known for step {name}")
    return target.post_install.run_item(ctx, {**item, "step": name})
