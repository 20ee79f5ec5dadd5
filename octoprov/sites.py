"""Sites: named places with their own boot network (a branch office).

A site's machines boot from its edge (``octoprov pxe --site NAME``), which serves boot answers and files from
the site's ``boot_url``, and its steps run on its own workers (queues ``<pool>@<name>``). Hypervisor nodes and
bare-metal machines belong to a site; a task takes its site from its node or machine when it is created, and
keeps it. No site is the central one: its queues and boot services are those of a single-site install.
"""

from __future__ import annotations

import re
import threading
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field
from sqlalchemy import BindParameter, Connection, Select, select
from sqlalchemy.orm import Session

from octoprov import states
from octoprov.db import Database
from octoprov.errors import Conflict, InvalidRequest, NotFound
from octoprov.models import Node, Site, Task
from octoprov.netboot.ipxe import UnsafeValue, ipxe_word
from octoprov.nodes import check_site
from octoprov.packages import Description
from octoprov.references import save_unique
from octoprov.specs import Spec, Timestamp, View

_NAME = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")


def check_site_name(name: str) -> str:
    """A DNS label that starts with a letter: it becomes part of queue names and URLs, and never looks like an id."""
    if not _NAME.fullmatch(name):
        raise ValueError("must be 1 to 63 lower-case letters, digits and hyphens, starting with a letter and not "
                         "ending with a hyphen (a DNS label)")
    return name


def check_boot_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]``: it stands in the iPXE scripts the edge serves, so one iPXE word."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ValueError("must be http(s)://host[:port], where the site's machines reach its edge")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ValueError("must hold no user, password, query or fragment")
    try:
        ipxe_word(url)
    except UnsafeValue:
        raise ValueError("holds characters an iPXE script cannot carry") from None
    return url.rstrip("/")


SiteName = Annotated[str, AfterValidator(check_site_name)]


class SiteSpec(Spec):
    name: SiteName = Field(max_length=63, description="A DNS label, e.g. branch1: its queues are <pool>@<name>")
    description: Description | None = None
    boot_url: Annotated[str, Field(min_length=1, max_length=500), AfterValidator(check_boot_url)] = Field(
        description="Where the site's machines fetch boot scripts and files: its edge's HTTP server, e.g. "
                    "http://198.51.100.2:8081")


class SiteView(View):
    id: int
    name: str
    description: str | None
    boot_url: str
    created_at: Timestamp
    updated_at: Timestamp


def site_query() -> Select[Site]:
    return select(Site).order_by(Site.id)


def register_site(session: Session, spec: SiteSpec) -> Site:
    site = Site(name=spec.name, description=spec.description, boot_url=spec.boot_url)
    save_unique(session, site, "site")
    return site


def get_site(session: Session, ref: str | int) -> Site:
    """A site by id, or by name (names start with a letter, so a number is always an id)."""
    if isinstance(ref, int) or ref.isdigit():
        found = session.get(Site, int(ref)) if int(ref) < 2**31 else None
    else:
        found = session.scalar(select(Site).where(Site.name == ref))
    if found is None:
        raise NotFound(f"no site {ref}")
    return found


def _users(session: Session, site: Site) -> str | None:
    """What keeps a site in use: a node or machine registered there, or an active task of it."""
    node = session.scalar(select(Node.name).where(Node.site_id == site.id).limit(1))
    if node is not None:
        return f"node {node} belongs to it"
    task = session.scalar(select(Task.id).where(Task.site_id == site.id, Task.status.in_(states.ACTIVE)).limit(1))
    return None if task is None else f"task {task} runs there"


def update_site(session: Session, ref: str | int, spec: SiteSpec) -> Site:
    """Redescribe a site or move its edge; renaming is refused while it is in use (its queues are named after it)."""
    site = get_site(session, ref)
    if spec.name != site.name and (used := _users(session, site)):
        raise Conflict(f"name: site {site.name} cannot be renamed while in use: {used}")
    site.name, site.description, site.boot_url = spec.name, spec.description, spec.boot_url
    save_unique(session, site, "site")
    return site


def remove_site(session: Session, ref: str | int) -> None:
    """Refused while nodes or active tasks use it; the ended tasks of the site forget it."""
    site = get_site(session, ref)
    if used := _users(session, site):
        raise Conflict(f"site {site.name} is in use: {used}")
    for task in session.scalars(select(Task).where(Task.site_id == site.id)):
        task.site_id = None
    session.delete(site)


def task_site(session: Session, owner: Node | None, requested: int | None) -> int | None:
    """The site a new task runs at: its node's or machine's, or the one the request names (only where the
    owner has none, or the same)."""
    check_site(session, requested)
    if owner is not None and owner.site_id is not None:
        if requested is not None and requested != owner.site_id:
            raise InvalidRequest({"siteId": f"{owner.name} belongs to site {owner.site_id}, not {requested}"})
        return owner.site_id
    return requested


def site_name(session: Session, site_id: int | None) -> str | None:
    """The name of a site by id (None: the central site, nothing to read; one the session holds: no read)."""
    site = session.get(Site, site_id) if site_id is not None else None
    return site.name if site is not None else None


def task_site_select(task_id: int | BindParameter[int]) -> Select[str]:
    """The name of a task's site, as a statement: read alone, or as a column of a larger read (which may
    name the task by a parameter, to be built once)."""
    return select(Site.name).join(Task, Task.site_id == Site.id).where(Task.id == task_id)


def task_site_name(reader: Session | Connection, task_id: int) -> str | None:
    return reader.scalar(task_site_select(task_id))


def node_site_name(session: Session, node_id: int) -> str | None:
    return session.scalar(select(Site.name).join(Node, Node.site_id == Site.id).where(Node.id == node_id))


class SiteLookup:
    """The site names of tasks and machines, for choosing their queues: a task's site never changes, so each is
    read once per process (bounded)."""

    LIMIT = 10_000

    def __init__(self, database: Database):
        self.database = database
        self._tasks: dict[int, str | None] = {}
        self._lock = threading.Lock()

    def of_task(self, task_id: int) -> str | None:
        if task_id in self._tasks:
            return self._tasks[task_id]
        with self.database.session() as session:
            name = task_site_name(session, task_id)
        self.remember(task_id, name)
        return name

    def remember(self, task_id: int, name: str | None) -> None:
        """A new task's site, told by its submission, which knows it: the task's first message is sent without
        reading it back."""
        with self._lock:
            if len(self._tasks) >= self.LIMIT:
                self._tasks.clear()
            self._tasks[task_id] = name

    def of_machine(self, machine_id: int) -> str | None:
        """A machine may move between sites: read each time (inspections are rare)."""
        with self.database.session() as session:
            return node_site_name(session, machine_id)
