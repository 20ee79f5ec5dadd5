"""A request's domain join checked against the domain before the task is accepted (``POST /tasks``, when
``OCTOPROV_CHECK_ON_HOST`` is on): bind as the join's account over LDAPS and look the OU up. A join that
cannot work otherwise fails an hour later, at the end of Windows Setup (online) or at the
prepare_domain_join step (offline).

What the domain controller refuses becomes a 400 naming the field to correct. A domain controller that
does not answer is no reason to refuse a task (it may be back by the time the join runs): the task is
accepted with a warning in its log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from octoprov.domainjoin.directory import (
    Credentials,
    DirectoryError,
    Refused,
    Unreachable,
    Untrusted,
    WrongDomain,
    open_directory,
)
from octoprov.domainjoin.samba import join_account
from octoprov.errors import InvalidRequest
from octoprov.logs import redactor

if TYPE_CHECKING:
    from octoprov.settings import Settings
    from octoprov.taskspec import TaskSpec


def _account(spec: TaskSpec, settings: Settings) -> tuple[Credentials, str] | None:
    """The account the join will use and the field that gives it: the request's service account for an
    online join (Setup joins with it); for an offline join, the samba backend's account (the djoin
    backend's runs on the management host and is not the request's)."""
    domain = spec.domain
    if domain.method == "online":
        account = domain.service_account
        return (Credentials(account.username, account.password), "domain.serviceAccount") if account else None
    if settings.domain_join_backend != "samba":
        return None
    found = join_account(spec, settings)
    if found is None:
        raise InvalidRequest({"domain.serviceAccount": "required for an offline join: the server has no account of "
                                                       "its own for it (OCTOPROV_SAMBA_JOIN_USERNAME)"})
    return found


def check_domain_join(spec: TaskSpec, settings: Settings) -> list[str]:
    """Raise InvalidRequest for what the domain refuses; return warnings for the task's log."""
    domain = spec.domain
    if not domain.join or not domain.name:
        return []
    found = _account(spec, settings)
    if found is None:
        return []
    credentials, source = found
    redactor.register(credentials.password)
    try:
        with open_directory(settings, domain.name, credentials) as directory:
            if domain.ou and not directory.is_container(domain.ou):
                raise InvalidRequest({"domain.ou": f"{directory.dc_name} knows no OU {domain.ou} "
                                                   f"(or {credentials.username} may not see it)"})
    except Refused as exc:
        raise InvalidRequest(_refused(source, exc)) from None
    except WrongDomain as exc:
        raise InvalidRequest({"domain.name": f"{exc.message} (OCTOPROV_DOMAIN_CONTROLLER)"}) from None
    except (Unreachable, Untrusted) as exc:
        return [f"Domain join not checked: {exc.message}; the join is tried when the task runs"]
    except DirectoryError as exc:
        return [f"Domain join not checked: {exc.message}"]
    return []


def _refused(source: str, exc: Refused) -> dict[str, str]:
    if source == "domain.serviceAccount":
        field = "domain.serviceAccount.username" if "no such account" in exc.message else \
            "domain.serviceAccount.password"
        return {field: exc.message}
    return {"domain.serviceAccount": f"not given, and the server's own account ({source}) was refused: "
                                     f"{exc.message}"}
