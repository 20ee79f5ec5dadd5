"""What a network-booting machine should do, by its MAC: install, or boot its local disk.

The one lookup the PXE services share (like smee's ``GetByMac``). A machine installs only
while its task is between "boot configuration ready" and "OS installed"; before that, after
that, or with no task, it boots from its disk, so a finished machine never reinstalls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from octoprov import states
from octoprov.answerfiles.kickstart import uses_kickstart
from octoprov.crypto import Vault
from octoprov.machines import record_hardware
from octoprov.models import Image, Task, TaskLog, TaskStep, aware, utcnow
from octoprov.netboot import grub, ipxe
from octoprov.settings import Settings

API = "/api/v1/provisioning"


@dataclass(frozen=True)
class BootAnswer:
    action: str  # install | localboot | menu (unknown machines, when they are answered)
    script: str  # for iPXE
    document: dict[str, Any]  # for JSON clients (the spec's boot config response)
    task_id: int | None = None
    grub: str = ""  # for the signed GRUB of Secure Boot machines (octoprov/netboot/grub.py)


def files_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def active_task_for_mac(session: Session, mac: str) -> Task | None:
    return session.scalars(
        select(Task).where(Task.mac_address == mac, Task.status.in_(states.ACTIVE)).order_by(Task.id.desc()).limit(1)
    ).first()


def installing(session: Session, task: Task) -> bool:
    """Boot config ready and the OS not installed yet: the window in which a machine boots its installer
    and fetches the task's files."""
    status = dict(session.execute(select(TaskStep.name, TaskStep.status).where(TaskStep.task_id == task.id)).all())
    return status.get("register_mac") == "done" and status.get("os_install") != "done"


def record_boots(session: Session, lines: list[tuple[int, str]], every_s: int = 60) -> None:
    """Log that machines fetched their boot scripts: ``(task_id, message)`` in the order served, for tasks that
    still exist. The same message (answer, reason, address) at most once a minute per task, for firmware
    retries; a different one at once, so the log shows the moment the answer changed (install, then local
    boot once the OS is installed) or another host asked. A few statements for the whole batch: a storm's
    lines come in the thousands."""
    ids = sorted({task_id for task_id, _ in lines})
    existing: set[int] = set()
    last: dict[int, tuple[datetime, str]] = {}
    for start in range(0, len(ids), 500):  # a bounded number of parameters a statement
        chunk = ids[start:start + 500]
        existing.update(session.scalars(select(Task.id).where(Task.id.in_(chunk))))
        newest = (select(func.max(TaskLog.id)).where(TaskLog.task_id.in_(chunk), TaskLog.step == "pxe")
                  .group_by(TaskLog.task_id))
        for row in session.execute(select(TaskLog.task_id, TaskLog.timestamp, TaskLog.message)
                                   .where(TaskLog.id.in_(newest))):
            last[row.task_id] = (aware(row.timestamp), row.message)
    now = utcnow()
    for task_id, message in lines:
        if task_id not in existing:
            continue
        logged = last.get(task_id)
        if logged is not None and logged[1] == message and (now - logged[0]).total_seconds() < every_s:
            continue
        session.add(TaskLog(task_id=task_id, message=message, step="pxe"))
        last[task_id] = (now, message)


def no_task_message(session: Session, mac: str) -> str:
    """Why a MAC without an active task boots its disk: it never had a task, or its last one ended."""
    last = session.execute(select(Task.id, Task.status).where(Task.mac_address == mac)
                           .order_by(Task.id.desc()).limit(1)).first()
    if last is None:
        return "No provisioning task for this MAC"
    return f"No active task for this MAC: its last task {last.id} is {last.status}; a new task is needed to reinstall"


def not_installing_message(session: Session, task: Task) -> str:
    """Why a machine with an active task boots its disk: which step its task is at, and until when."""
    rows = session.execute(select(TaskStep.name, TaskStep.title, TaskStep.status).where(TaskStep.task_id == task.id)
                           .order_by(TaskStep.position)).all()
    current = next((row.title for row in rows if row.status != "done"), task.current_step or task.status)
    done = {row.name for row in rows if row.status == "done"}
    if "os_install" in done:
        until = "the OS is installed, so the machine boots its disk from now on"
    elif "register_mac" in {row.name for row in rows}:
        until = "the machine boots its disk until its boot configuration is ready"
    else:
        until = "the machine boots its disk: this task installs without network boot"
    return f"Task {task.id} is at step {current}; {until}"


def chain_url(settings: Settings, boot_url: str | None = None) -> str:
    return (boot_url or settings.effective_public_url) + API + "/pxe/chain.ipxe"


def local_boot(reason: str) -> BootAnswer:
    return BootAnswer("localboot", ipxe.render("localboot", reason=reason),
                      {"action": "localboot", "message": reason}, grub=grub.local_boot_config(reason))


def boot_answer(session: Session, settings: Settings, vault: Vault, mac: str,
                hardware: Mapping[str, str | None]) -> BootAnswer:
    return answer_for(session, settings, vault, mac, active_task_for_mac(session, mac), hardware)


def answer_for(session: Session, settings: Settings, vault: Vault, mac: str, task: Task | None,
               hardware: Mapping[str, str | None], boot_url: str | None = None) -> BootAnswer:
    """The answer for ``mac`` given its active task (None: it has none), as the caller looked it up.
    ``boot_url``: where the machine fetches boot files (a site's edge); default: the central API."""
    if task is None and settings.boot_unknown_machines:
        script = ipxe.render("menu", mac=mac.replace(":", "-"), chain_url=chain_url(settings))
        message = no_task_message(session, mac)
        return BootAnswer("menu", script, {"action": "menu", "message": message}, grub=grub.local_boot_config(message))
    if task is None:
        return local_boot(no_task_message(session, mac))
    seen = {**(task.hardware or {}), **{k: v for k, v in hardware.items() if v}}
    if seen != (task.hardware or {}):  # write only what is new: a PXE storm must not queue on writes
        task.hardware = seen
        record_hardware(session, mac, seen)  # the machine's inventory, for driver matching on later installs
    if not installing(session, task):
        return local_boot(not_installing_message(session, task))
    image = session.get(Image, (task.config or {}).get("os", {}).get("imageId"))
    files_token = vault.decrypt(task.files_token_encrypted) if task.files_token_encrypted else ""
    assert task.callback_token_encrypted is not None  # every task gets its callback token when it is created
    return install_answer(settings, task, image, vault.decrypt(task.callback_token_encrypted), files_token,
                          boot_url=boot_url)


def install_answer(settings: Settings, task: Task, image: Image | None, token: str, files_token: str,
                   boot_url: str | None = None) -> BootAnswer:
    """The install script of a task (also what a dry run writes as boot.ipxe). Boot files (kernel, initrd,
    wimboot, WinPE) come from ``boot_url`` when given (a site's edge caches them); the task's own files and
    its callback always from the central API."""
    base = settings.effective_public_url
    images = (boot_url or base) + "/boot/images/"
    callback = base + API + "/pxe/status"
    files = files_url(settings, files_token)
    common = {"task_id": task.id, "hostname": task.hostname, "image_name": image.name if image else "?",
              "chain_url": chain_url(settings, boot_url)}
    document = {"action": "install", "taskId": task.id, "hostname": task.hostname, "callbackUrl": callback}
    if image is not None and image.kernel_path:
        assert image.initrd_path is not None  # an image is registered with both kernelPath and initrdPath or neither
        kernel_args = image_kernel_args(settings, image, files_token)
        script = ipxe.render("install-linux", kernel_url=images + quote(image.kernel_path),
                             initrd_url=images + quote(image.initrd_path), kernel_args=kernel_args,
                             callback_url=callback, token=token, **common)
        grub_config = grub.install_config(task_id=task.id, hostname=task.hostname, image_name=image.name,
                                          kernel_path=image.kernel_path, initrd_path=image.initrd_path,
                                          kernel_args=kernel_args, callback_url=callback, token=token)
        document["files"] = {"kernel": images + quote(image.kernel_path), "initrd": images + quote(image.initrd_path)}
        if uses_kickstart(image):
            document["kickstart"] = files + "kickstart.cfg"
        return BootAnswer("install", script, document, task.id, grub_config)
    if image is None or not image.boot_wim_path:
        return local_boot(f"Task {task.id}: its image has neither a kernel nor a WinPE boot.wim to boot")
    root = settings.effective_images_dir
    boot_wim = Path(image.boot_wim_path)
    bcd, sdi = _beside(root, boot_wim, "BCD"), _beside(root, boot_wim, "boot.sdi")
    if bcd is None or sdi is None:
        return local_boot(f"Task {task.id}: BCD and boot.sdi were not found beside {image.boot_wim_path}")
    urls = {"winpe-bcd": images + quote(bcd), "winpe-boot": images + quote(sdi),
            "winpe-wim": images + quote(str(boot_wim))}
    injected = [(name, files + name) for name in ("autounattend.xml", "startnet.cmd", "winpeshl.ini")]
    script = ipxe.render("install-windows", wimboot_url=images + quote(settings.wimboot_path),
                         bcd_url=urls["winpe-bcd"], boot_sdi_url=urls["winpe-boot"], boot_wim_url=urls["winpe-wim"],
                         injected=injected, **common)
    document.update(files=urls, autounattend=files + "autounattend.xml")
    # wimboot is unsigned: under Secure Boot, WinPE cannot be network-booted (docs/secure-boot.md)
    unsigned = (f"Task {task.id}: WinPE boots through wimboot, which is not signed, so a machine that enforces "
                "Secure Boot cannot network-boot it")
    return BootAnswer("install", script, document, task.id, grub.local_boot_config(unsigned))


def files_url(settings: Settings, files_token: str) -> str:
    """The folder URL of a task's own files (answer files), under its files token."""
    return f"{settings.effective_public_url}{API}/pxe/files/{files_token}/"


def image_kernel_args(settings: Settings, image: Image, files_token: str) -> str:
    """A Linux image's kernel arguments for a task: the image's own, and Anaconda's Kickstart URL."""
    kernel_args = image.kernel_args or ""
    if uses_kickstart(image):  # Anaconda: the task's Kickstart file, from its file URL
        kernel_args = f"{kernel_args} inst.ks={files_url(settings, files_token)}kickstart.cfg".strip()
    return kernel_args


def _beside(root: Path, boot_wim: Path, name: str) -> str | None:
    """WinPE's BCD and boot.sdi: beside boot.wim, or in ../Boot as the ADK's media folder has them."""
    for folder in (boot_wim.parent, boot_wim.parent.parent / "Boot"):
        if (root / folder / name).is_file():
            return str(folder / name)
    return None
