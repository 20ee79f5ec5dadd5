"""ISO boot mode's answer ISO (Hyper-V and KVM): the task's Autounattend.xml at the root of a small ISO 9660 image,
made in Python (pycdlib), which Windows Setup finds on any drive it can read when it starts from
the installation DVD.

The answer file is the one the network install serves, adapted to an install from the DVD:
Setup applies the DVD's own image (the WinPE share path is dropped; the image index stays), and
since nothing runs in WinPE to report progress, the ``installer_started`` and ``os_installed``
reports are sent at first logon, just before the first-boot report.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

import pycdlib

from octoprov.answerfiles.autounattend import callback_command
from octoprov.answerfiles.files import context_files
from octoprov.answerfiles.share import Endpoints
from octoprov.errors import PermanentError

if TYPE_CHECKING:
    from octoprov.context import TaskContext

UNATTEND = "urn:schemas-microsoft-com:unattend"
WCM = "http://schemas.microsoft.com/WMIConfig/2002/State"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
VOLUME_LABEL = "OCTOPROV_ANSWERS"
FILE_NAME = "autounattend.xml"
_NS = {"u": UNATTEND}
_REPORTS = (("installer_started", "'Setup started from the installation DVD'", "Report that Setup started"),
            ("os_installed", "'Windows installed from the installation DVD'", "Report the installation"))


def answer_iso(autounattend: str) -> bytes:
    """An ISO 9660 image (with Joliet and Rock Ridge names) holding ``autounattend.xml``."""
    data = autounattend.encode("utf-8")
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=VOLUME_LABEL, app_ident_str="Octoprov")
    try:
        iso.add_fp(io.BytesIO(data), len(data), "/" + FILE_NAME.upper() + ";1", rr_name=FILE_NAME,
                   joliet_path="/" + FILE_NAME)
        out = io.BytesIO()
        iso.write_fp(out)
        return out.getvalue()
    finally:
        iso.close()


def for_dvd_install(autounattend: str, endpoints: Endpoints, task_id: int, token: str) -> str:
    """The answer file adapted to Setup started from the installation DVD (see the module)."""
    for prefix, uri in (("", UNATTEND), ("wcm", WCM), ("xsi", XSI)):
        ET.register_namespace(prefix, uri)
    root = ET.fromstring(autounattend)  # noqa: S314 - Octoprov's own rendering, not outside input
    for install_from in root.iterfind(".//u:ImageInstall/u:OSImage/u:InstallFrom", _NS):
        for path in install_from.findall("u:Path", _NS):
            install_from.remove(path)
    logon = root.find("u:settings[@pass='oobeSystem']/u:component[@name='Microsoft-Windows-Shell-Setup']"
                      "/u:FirstLogonCommands", _NS)
    if logon is None:
        raise PermanentError("the answer file has no first-logon commands to report the installation with")
    for command in logon.findall("u:SynchronousCommand", _NS):
        order = command.find("u:Order", _NS)
        if order is None or order.text is None:
            raise PermanentError("a first-logon command of the answer file has no Order")
        order.text = str(int(order.text) + len(_REPORTS))
    for position, (event, message, description) in enumerate(_REPORTS):
        command = ET.Element(f"{{{UNATTEND}}}SynchronousCommand", {f"{{{WCM}}}action": "add"})
        for tag, text in (("Order", str(position + 1)),
                          ("CommandLine", callback_command(endpoints, task_id, token, event, "'ok'", message)),
                          ("Description", description), ("RequiresUserInput", "false")):
            ET.SubElement(command, f"{{{UNATTEND}}}{tag}").text = text
        logon.insert(position, command)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def dvd_answer_file(ctx: TaskContext) -> str:
    """The task's Autounattend.xml as the network install would serve it, adapted to the DVD."""
    with ctx.database.session() as session:
        rendered = context_files(session.connection(), ctx)
    if "autounattend.xml" not in rendered.files:
        why = rendered.problems.get("autounattend.xml") or "this task's image is not a Windows image"
        raise PermanentError(f"no answer file for the answer ISO: {why}")
    return for_dvd_install(rendered.files["autounattend.xml"], Endpoints.from_settings(ctx.settings), ctx.task_id,
                           ctx.callback_token())
