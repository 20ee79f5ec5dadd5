"""Running commands on a Windows host through pypsrp's RunspacePool and PowerShell objects.

One runspace pool per driver call; each command (a pipeline of :class:`Cmdlet`) is one PowerShell
invocation built with ``add_cmdlet(...).add_parameter(...)`` (or ``add_script`` of a fixed script
and ``add_parameter``), so every value reaches the host as a typed parameter, never as code.
A command that leaves anything in the error stream fails; its error text is what the operator
reads.

pypsrp and requests failures become the target errors the pipeline acts on: a refused login, an
untrusted certificate or a denied WinRM access fail the task at once (PermanentError); a host that
does not answer or drops the connection is retried (TargetUnreachable).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from octoprov.errors import PermanentError, TargetUnreachable
from octoprov.winrm.commands import Cmdlet, Pipeline, to_json
from octoprov.winrm.connection import Connect, Endpoint, open_wsman

log = logging.getLogger(__name__)
INT32 = range(-(2**31), 2**31)
ACCESS_DENIED = 5  # WSManFault code: the account may not use PowerShell remoting on the host
POLL_S = 5  # a running command's output is fetched at least this often (WinRM's operation timeout per receive)


class CommandFailed(PermanentError):
    """A command ran and reported an error (the host's own message, also in ``text``)."""

    def __init__(self, message: str, text: str = "") -> None:
        super().__init__(message)
        self.text = text or message


class LoginRefused(PermanentError):
    """The host refused the account's credentials."""


class HostSession:
    """Commands on one host over one runspace pool. ``check`` runs before each command (the
    task's cancellation check), so a cancelled task stops between two commands."""

    def __init__(self, pool: Any, where: Endpoint, check: Callable[[], None] | None = None) -> None:
        self._pool = pool
        self.where = where
        self._check = check

    def run(self, command: Cmdlet | Pipeline) -> list[Any]:
        """Run one command; its output objects, or CommandFailed with the error stream's text."""
        commands = _commands(command)
        shell = self._shell(commands)
        with translated(self.where):
            try:
                output: list[Any] = shell.invoke()
            finally:
                with contextlib.suppress(Exception):  # frees the pipeline on the host; never hides the result
                    shell.close()
        self._check_errors(shell, commands)
        return output

    def stream(self, command: Cmdlet | Pipeline, on_line: Callable[[str], None], timeout_s: float) -> None:
        """Run a long command (a post-install item), handing its output, information and warning
        records to ``on_line`` as lines of text while it runs; stopped on the host when it runs past
        ``timeout_s`` or the task is cancelled. Fails as :meth:`run` does."""
        from pypsrp.complex_objects import PSInvocationState

        commands = _commands(command)
        shell = self._shell(commands)
        seen = {"information": 0, "warning": 0, "output": 0}
        deadline = time.monotonic() + timeout_s
        with translated(self.where):
            try:
                shell.begin_invoke()
                while True:
                    if shell.state == PSInvocationState.RUNNING:
                        shell.poll_invoke(timeout=POLL_S)
                    for line in _new_lines(shell, seen):
                        on_line(line)
                    if shell.state != PSInvocationState.RUNNING:
                        break
                    if time.monotonic() > deadline:
                        _stop(shell)
                        raise PermanentError(f"{commands[0].name} still running on {self.where.label} after "
                                             f"{timeout_s:.0f} s: stopped")
                    if self._check:
                        try:
                            self._check()
                        except BaseException:
                            _stop(shell)
                            raise
            finally:
                with contextlib.suppress(Exception):
                    shell.close()
        self._check_errors(shell, commands)

    def _shell(self, commands: tuple[Cmdlet, ...]) -> Any:
        """pypsrp's PowerShell object for the commands, each value bound as a parameter."""
        from pypsrp.powershell import PowerShell

        if self._check:
            self._check()
        shell = PowerShell(self._pool)
        for item in commands:
            if item.script:
                shell.add_script(item.script)
            else:
                shell.add_cmdlet(item.name)
            for name, value in item.parameters:
                shell.add_parameter(name, _typed(value))
        log.debug("%s: %s", self.where.label, json.dumps(to_json(commands if len(commands) > 1 else commands[0])))
        return shell

    def _check_errors(self, shell: Any, commands: tuple[Cmdlet, ...]) -> None:
        errors = list(shell.streams.error)
        if shell.had_errors or errors:
            text = _error_text(errors)
            raise CommandFailed(f"{commands[0].name} on {self.where.label}: {text}", text)

    def json(self, command: Cmdlet | Pipeline) -> list[Any]:
        """Run a command whose output objects are JSON texts (the fixed read scripts); parsed."""
        texts = [text for text in self.run(command) if isinstance(text, str) and text.strip()]
        try:
            return [json.loads(text) for text in texts]
        except ValueError:
            name = command.name if isinstance(command, Cmdlet) else command[0].name
            raise PermanentError(f"{name} on {self.where.label} answered something other than JSON") from None


def _commands(command: Cmdlet | Pipeline) -> tuple[Cmdlet, ...]:
    return (command,) if isinstance(command, Cmdlet) else tuple(command)


def _new_lines(shell: Any, seen: dict[str, int]) -> list[str]:
    """Text of the records that arrived since the last call: information (Write-Host,
    Write-Information), warnings, then output objects."""
    streams: dict[str, tuple[list[Any], Callable[[Any], Any], str]] = {
        "information": (shell.streams.information, lambda record: record.message_data, ""),
        "warning": (shell.streams.warning, lambda record: record.message, "WARNING: "),
        "output": (shell.output, lambda value: value, ""),
    }
    lines: list[str] = []
    for name, (records, value, prefix) in streams.items():
        for record in records[seen[name]:]:
            lines += [prefix + line.rstrip() for line in _record_text(value(record)).splitlines()]
        seen[name] = len(records)
    return lines


def _record_text(value: Any) -> str:
    """A deserialized value as PowerShell would print it: strings as they are, objects by their
    ToString() (a Write-Host message, for one)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(getattr(value, "to_string", None) or getattr(value, "_to_string", None) or value)


def _stop(shell: Any) -> None:
    """Stop a running pipeline on the host (its own errors hidden: the caller's error counts)."""
    with contextlib.suppress(Exception):
        shell.stop()


def _typed(value: Any) -> Any:
    """pypsrp sends every Python int as Int32; sizes in bytes need Int64 (and a bool stays a bool)."""
    if isinstance(value, int) and not isinstance(value, bool) and value not in INT32:
        from pypsrp.serializer import TaggedValue

        return TaggedValue("I64", value)
    return value


def _error_text(errors: list[Any]) -> str:
    """What PowerShell would print for each error record: its text (the exception's message), else
    its category and error id."""
    lines: list[str] = []
    for record in errors:
        for text in (getattr(record, "_to_string", None), getattr(record, "to_string", None),
                     getattr(record, "message", None), getattr(record, "fq_error", None)):
            if text:
                if str(text) not in lines:
                    lines.append(str(text))
                break
    return "; ".join(lines)[:2000] or "the command failed without an error message"


@contextlib.contextmanager
def translated(where: Endpoint) -> Iterator[None]:
    """pypsrp's and requests' exceptions as the target errors the pipeline understands."""
    import requests
    from pypsrp.exceptions import AuthenticationError, WinRMError, WinRMTransportError, WSManFaultError
    from spnego.exceptions import SpnegoError

    refused: tuple[type[Exception], ...] = (AuthenticationError,)
    with contextlib.suppress(ImportError):  # CredSSP support is an install option of pypsrp
        from requests_credssp.exceptions import AuthenticationException

        refused = (AuthenticationError, AuthenticationException)
    host = f"{where.label} ({where.server}:{where.port})"
    try:
        yield
    except refused:
        raise LoginRefused(f"WinRM on {host} refused the login of {where.username} ({where.transport}): "
                             "check the node's username and password") from None
    except WinRMTransportError as exc:
        if exc.code == 401:
            raise LoginRefused(f"WinRM on {host} refused the login of {where.username}") from None
        raise TargetUnreachable(f"WinRM on {host} answered HTTP {exc.code}") from None
    except WSManFaultError as exc:
        if exc.code == ACCESS_DENIED:
            raise PermanentError(f"WinRM on {host}: access denied for {where.username} (it must be allowed to use "
                                 "PowerShell remoting, e.g. as a member of Hyper-V Administrators and Remote "
                                 "Management Users)") from None
        raise TargetUnreachable(f"WinRM on {host}: {exc.reason or exc.code}") from None
    except requests.exceptions.SSLError as exc:
        raise PermanentError(f"the TLS certificate of {host} is not trusted ({_first_line(exc)}): install its CA "
                             "on the worker, or set the node's winrm.validateCertificate to false") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise TargetUnreachable(f"connection to WinRM on {host} failed: {_first_line(exc)}") from None
    except SpnegoError as exc:
        raise PermanentError(f"{where.transport} authentication to {host} failed: {_first_line(exc)}") from None
    except ImportError as exc:  # CredSSP or Kerberos support missing on this worker
        raise PermanentError(f"{where.transport} is not usable on this worker: {exc}") from None
    except WinRMError as exc:
        raise TargetUnreachable(f"WinRM on {host}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


@contextlib.contextmanager
def host_session(where: Endpoint, connect: Connect | None = None,
                 check: Callable[[], None] | None = None) -> Iterator[HostSession]:
    """Open a runspace pool on the host for the duration of the block, and close it whatever
    happens (a failure while closing never hides the block's own error)."""
    from pypsrp.powershell import RunspacePool

    try:
        wsman = (connect or open_wsman)(where)
    except ValueError as exc:  # pypsrp refuses a combination of settings
        raise PermanentError(f"WinRM settings of {where.label}: {exc}") from None
    pool = RunspacePool(wsman)
    try:
        with translated(where):
            pool.open()
        yield HostSession(pool, where, check)
    finally:
        with contextlib.suppress(Exception):
            pool.close()
        with contextlib.suppress(Exception):
            wsman.close()
