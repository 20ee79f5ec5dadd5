"""Looking up what a request refers to (images, templates, hypervisor nodes, post-install packages,
groups and library scripts) in the database and the scripts library."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from octoprov import states
from octoprov.errors import Conflict
from octoprov.models import Group, Image, Node, Package, Site, Task, Template
from octoprov.nodes import HYPERVISOR
from octoprov.settings import Settings
from octoprov.validation import check_script_name

_Row = TypeVar("_Row")

# postInstall.runScripts names a file of the scripts library (OCTOPROV_SCRIPTS_DIR); its extension
# says which OS runs it.
SCRIPT_OS_TYPES = {".ps1": "windows", ".sh": "linux"}


def script_path(name: str, scripts_dir: Path) -> Path | None:
    """The library script called ``name``; None unless it is a plain file name of a script there."""
    try:
        check_script_name(name)
    except ValueError:
        return None
    path = Path(scripts_dir) / name
    return path if path.suffix in SCRIPT_OS_TYPES and path.is_file() else None


def script_os_type(name: str, scripts_dir: Path) -> str | None:
    """The OS a library script is for ("windows" for .ps1, "linux" for .sh), or None if there is none."""
    path = script_path(name, scripts_dir)
    return SCRIPT_OS_TYPES[path.suffix] if path else None


class DbReferences:
    """The ``taskspec.References`` the API and CLI use: answers from the database. The image, node and
    template a request names are read once each, whole, and kept for the request: validation asks about
    them several times and the caller then stores the task with them."""

    def __init__(self, session: Session, scripts_dir: Path | None = None):
        """``scripts_dir``: the scripts library; by default the one the process's environment configures."""
        self.session = session
        self.scripts_dir = scripts_dir
        self._read: dict[tuple[type[Any], int], Any] = {}  # (model, id) -> the row, or None when there is none

    def _once(self, model: type[_Row], ident: int) -> _Row | None:
        key = (model, ident)
        if key not in self._read:
            self._read[key] = self.session.get(model, ident)
        found: _Row | None = self._read[key]
        return found

    def image(self, image_id: int) -> Image | None:
        return self._once(Image, image_id)

    def node(self, node_id: int) -> Node | None:
        return self._once(Node, node_id)

    def template(self, template_id: int) -> Template | None:
        return self._once(Template, template_id)

    def image_os_type(self, image_id: int) -> str | None:
        image = self.image(image_id)
        return image.os_type if image else None

    def image_indexes(self, image_id: int) -> list[int] | None:
        image = self.image(image_id)
        return [edition["index"] for edition in (image.editions if image else None) or []]

    def template_exists(self, template_id: int) -> bool:
        return self.template(template_id) is not None

    def hypervisor_kind(self, node_id: int) -> str | None:
        node = self.node(node_id)
        return node.kind if node is not None and node.role == HYPERVISOR else None

    def package(self, package_id: int) -> Package | None:
        return self.session.get(Package, package_id)

    def group_exists(self, group_id: int) -> bool:
        return self.session.scalar(select(Group.id).where(Group.id == group_id)) is not None

    def script_os_type(self, name: str) -> str | None:
        return script_os_type(name, self.scripts_dir or Settings.from_env().effective_scripts_dir)


def active_post_install(session: Session) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each open task's id and ``postInstall`` section: what it names must stay until it ends."""
    rows = session.execute(select(Task.id, Task.config).where(Task.status.in_(states.ACTIVE)).order_by(Task.id))
    for task_id, config in rows:
        section = (config or {}).get("postInstall")
        if isinstance(section, dict):
            yield task_id, section


def save_unique(session: Session, row: Package | Group | Site, what: str) -> None:
    """Add and flush a named row; a name another row has is a 409 naming the field (checked first,
    and again by the unique index should two requests race)."""
    model = type(row)
    query = select(model.id).where(model.name == row.name)
    if row.id is not None:
        query = query.where(model.id != row.id)
    with session.no_autoflush:
        taken = session.scalar(query) is not None
    if taken:
        raise Conflict(f"name: a {what} called {row.name!r} exists already")
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"name: a {what} called {row.name!r} exists already") from None
