"""Offline domain join from the Linux worker: Samba's ``net offlinejoin provision`` writes the blob (the
same ODJ_PROVISION_DATA that ``djoin.exe /provision`` writes), so no Windows management host is needed.

The computer account is created first, over LDAPS, carrying the task's tag (its ``description``, as the
djoin backend's) in the same add: it never exists untagged, so a rollback or a retry always recognises
its own. ``net`` then provisions that account (``reuse``: a new random password, the blob). An account of
that name that this task did not create is refused and left alone; Samba's net itself would take such an
account over without a word, so the check happens here, before net runs.

The account's password reaches net in its environment (``PASSWD``, readable by the worker's user only),
never on the command line, which every user of the host can read.
"""

from __future__ import annotations

import base64
import binascii
import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from octoprov.domainjoin.base import DomainJoinInterface, domain_name
from octoprov.domainjoin.commands import TAG
from octoprov.domainjoin.directory import (
    Credentials,
    Directory,
    DirectoryError,
    OperationFailed,
    Unreachable,
    open_directory,
)
from octoprov.errors import PermanentError, TransientError
from octoprov.logs import redactor

if TYPE_CHECKING:
    from octoprov.context import TaskContext
    from octoprov.settings import Settings
    from octoprov.taskspec import TaskSpec

NET_TIMEOUT_S = 120
# net's own words for a domain controller it could not reach: worth a retry, unlike the rest
_TRANSIENT = ("failed to find DC", "NT_STATUS_IO_TIMEOUT", "NT_STATUS_HOST_UNREACHABLE", "Connection refused",
              "NT_STATUS_CONNECTION_REFUSED", "NT_STATUS_NO_LOGON_SERVERS", "Cannot contact any KDC")


def join_account(spec: TaskSpec, settings: Settings) -> tuple[Credentials, str] | None:
    """The account that makes the computer account, with where it came from (the request field or the
    setting to name when it is refused): the request's ``domain.serviceAccount``, else the server's."""
    account = spec.domain.service_account
    if account is not None:
        return Credentials(account.username, account.password), "domain.serviceAccount"
    if settings.samba_join_username and settings.samba_join_password:
        return Credentials(settings.samba_join_username, settings.samba_join_password), "OCTOPROV_SAMBA_JOIN_USERNAME"
    return None


def _credentials(ctx: TaskContext) -> Credentials:
    found = join_account(ctx.spec, ctx.settings)
    if found is None:
        raise PermanentError("the samba domain-join backend needs an account: the request's domain.serviceAccount, "
                             "or OCTOPROV_SAMBA_JOIN_USERNAME and OCTOPROV_SAMBA_JOIN_PASSWORD")
    credentials = found[0]
    if "%" in credentials.username:  # net would split user%password there
        raise PermanentError(f"net cannot log on as {credentials.username}: a user name with % in it")
    redactor.register(credentials.password)
    return credentials


def _step_error(exc: DirectoryError) -> Exception:
    return TransientError(exc.message) if isinstance(exc, Unreachable) else PermanentError(exc.message)


class SambaDomainJoin(DomainJoinInterface):
    def provision_offline_join(self, ctx: TaskContext) -> str:
        domain, name, tag = domain_name(ctx), ctx.hostname, f"{TAG}{ctx.task_id}"
        credentials = _credentials(ctx)
        try:
            with open_directory(ctx.settings, domain, credentials) as directory:
                _own_account(directory, ctx, name, tag)
                dc_name = directory.dc_name
        except DirectoryError as exc:
            raise _step_error(exc) from None
        ctx.check_cancelled()
        blob = provision_blob(ctx.settings, credentials, domain, name, dc_name)
        redactor.register(blob)
        return blob

    def remove_computer_account(self, ctx: TaskContext) -> str:
        domain, name, tag = domain_name(ctx), ctx.hostname, f"{TAG}{ctx.task_id}"
        try:
            with open_directory(ctx.settings, domain, _credentials(ctx)) as directory:
                account = directory.find_computer(name)
                if account is None:
                    return f"no computer account {name} in {domain}"
                if account.description != tag:
                    return f"computer account {name} kept: this task did not create it"
                directory.delete_tree(account.dn)
        except DirectoryError as exc:
            raise _step_error(exc) from None
        return f"Removed computer account {name} ({account.dn}) from {domain}"


def _own_account(directory: Directory, ctx: TaskContext, name: str, tag: str) -> None:
    """This task's account of that name: found (an earlier attempt made it) or created now, tagged."""
    account = directory.find_computer(name)
    if account is None:
        container = ctx.spec.domain.ou or directory.computers_container()
        try:
            directory.add_computer(name, container, tag)
            return
        except OperationFailed as exc:
            if exc.code == "noSuchObject":
                raise PermanentError(f"there is no OU {container} in {directory.domain}") from None
            if exc.code != "entryAlreadyExists":
                raise
        account = directory.find_computer(name)  # made meanwhile by someone else, or another object's CN
        if account is None:
            raise PermanentError(f"an object called {name} already exists in {container}: choose another hostname")
    if account.description != tag or not account.is_computer:
        raise PermanentError(f"a computer account {name} already exists in {directory.domain} ({account.dn}) and "
                             "was not created by this task: remove it or choose another hostname")


def _net_config(folder: Path) -> Path:
    """A configuration of net's own: its caches and state in the call's private folder, nothing from (or
    into) the host's Samba."""
    conf = folder / "smb.conf"
    state = folder / "state"
    state.mkdir()
    conf.write_text("[global]\n" + "".join(f"\t{key} = {state}\n" for key in (
        "lock directory", "state directory", "cache directory", "private dir", "ncalrpc dir")))
    return conf


def provision_blob(settings: Settings, credentials: Credentials, domain: str, name: str, dc_name: str) -> str:
    """``net offlinejoin provision ... reuse`` against the domain controller ``dc_name`` for the account
    that exists now; the blob is the base64 text of the save file (UTF-16 with a BOM, as djoin's)."""
    with tempfile.TemporaryDirectory(prefix="octoprov-odj-") as temporary:
        folder = Path(temporary)
        save_file = folder / "odj.txt"
        argv = [settings.samba_net, "offlinejoin", "provision", f"--configfile={_net_config(folder)}",
                f"--user={credentials.username}", f"domain={domain}", f"machine_name={name}", f"dcname={dc_name}",
                "reuse", f"savefile={save_file}"]
        env = {key: value for key, value in os.environ.items() if not key.startswith("OCTOPROV_")}
        env.update(PASSWD=credentials.password, LC_ALL="C")
        try:
            done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=NET_TIMEOUT_S, cwd=folder)
        except FileNotFoundError:
            raise PermanentError(f"Samba's net is not installed ({settings.samba_net}; OCTOPROV_SAMBA_NET): the samba "
                                 "domain-join backend needs net 4.15 or later") from None
        except subprocess.TimeoutExpired:
            raise TransientError(f"net offlinejoin provision for {name} took longer than {NET_TIMEOUT_S} s") from None
        said = redactor.redact(" ".join((done.stdout + " " + done.stderr).split()))[-500:]
        if done.returncode != 0 or not save_file.is_file():
            error = TransientError if any(word in said for word in _TRANSIENT) else PermanentError
            raise error(f"net offlinejoin provision for {name} in {domain} failed (exit status {done.returncode}): "
                        f"{said}")
        return _blob(save_file.read_bytes())


def _blob(data: bytes) -> str:
    """The base64 text of a save file: UTF-16 with a BOM and a closing NUL (as djoin.exe writes it)."""
    try:
        text = data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data.decode("ascii")
    except UnicodeDecodeError:
        raise PermanentError("net offlinejoin wrote a save file that is not text") from None
    blob = "".join(text.replace("\ufeff", "").replace("\x00", "").split())
    try:
        base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise PermanentError("net offlinejoin wrote a save file that holds no base64 blob") from None
    if not blob:
        raise PermanentError("net offlinejoin wrote an empty save file")
    return blob
