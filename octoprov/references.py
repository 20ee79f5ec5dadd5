"""Looking up what a request refers to (images, templates, hypervisor nodes) in the database."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from octoprov.models import Image, Node, Template
from octoprov.nodes import HYPERVISOR


class DbReferences:
    """The ``taskspec.References`` the API and CLI use: answers from the database."""

    def __init__(self, session: Session):
        self.session = session

    def image_os_type(self, image_id: int) -> str | None:
        return self.session.scalar(select(Image.os_type).where(Image.id == image_id))

    def image_indexes(self, image_id: int) -> list[int] | None:
        editions = self.session.scalar(select(Image.editions).where(Image.id == image_id))
        return [edition["index"] for edition in editions or []]

    def template_exists(self, template_id: int) -> bool:
        return self.session.scalar(select(Template.id).where(Template.id == template_id)) is not None

    def hypervisor_kind(self, node_id: int) -> str | None:
        return self.session.scalar(select(Node.kind).where(Node.id == node_id, Node.role == HYPERVISOR))
