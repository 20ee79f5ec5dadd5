"""Provisioning templates: named defaults (sizes, image, locale, domain) a task starts from."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from octoprov import states, taskspec
from octoprov.errors import Conflict
from octoprov.lookup import fetch
from octoprov.models import Task, Template
from octoprov.references import DbReferences
from octoprov.specs import Timestamp, View

# request field (camelCase) -> model column
COLUMNS = {
    "name": "name",
    "description": "description",
    "defaultCpu": "default_cpu",
    "defaultMemoryGb": "default_memory_gb",
    "defaultDisks": "default_disks",
    "imageId": "image_id",
    "language": "language",
    "timezone": "timezone",
    "domainJoin": "domain_join",
    "domainName": "domain_name",
    "domainOu": "domain_ou",
    "domainJoinMethod": "domain_join_method",
    "postInstallPackages": "post_install_packages",
}


class TemplateView(View):
    id: int
    name: str
    description: str | None
    default_cpu: int
    default_memory_gb: int
    default_disks: list[Any] | None
    image_id: int | None
    language: str
    timezone: str
    domain_join: bool
    domain_name: str | None
    domain_ou: str | None
    domain_join_method: str
    post_install_packages: list[Any] | None
    created_at: Timestamp
    updated_at: Timestamp


def _apply(template: Template, spec: taskspec.TemplateSpec) -> None:
    values = spec.model_dump(mode="json", by_alias=True)
    for field, column in COLUMNS.items():
        setattr(template, column, values.get(field))


def create_template(session: Session, body: object) -> Template:
    spec = taskspec.parse_template(body, DbReferences(session))
    template = Template()
    _apply(template, spec)
    session.add(template)
    session.flush()
    return template


def update_template(session: Session, template_id: int, body: object) -> Template:
    """Change the fields the body names; the result is validated as a whole."""
    template = get_template(session, template_id)
    if isinstance(body, dict):
        stored = {field: getattr(template, column) for field, column in COLUMNS.items()}
        body = {**{k: v for k, v in stored.items() if v is not None}, **body}
    spec = taskspec.parse_template(body, DbReferences(session))
    _apply(template, spec)
    session.flush()
    return template


def get_template(session: Session, template_id: int) -> Template:
    return fetch(session, Template, template_id, "template")


def delete_template(session: Session, template_id: int) -> None:
    """Delete a template. Refused while an open task uses it; finished tasks keep their own copy
    of the configuration and only lose the link."""
    template = get_template(session, template_id)
    open_task = session.scalar(
        select(Task.id).where(Task.template_id == template_id, Task.status.in_(states.ACTIVE)).limit(1)
    )
    if open_task is not None:
        raise Conflict(f"template {template_id} is used by open task {open_task}")
    session.execute(update(Task).where(Task.template_id == template_id).values(template_id=None))
    session.delete(template)
