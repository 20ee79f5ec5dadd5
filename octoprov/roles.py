"""Who may do what: three roles, each allowed everything the ones below it are.

viewer reads everything but secrets; operator also creates, cancels and retries tasks; admin also manages
the libraries, hypervisor nodes, machines, packages, tokens and users. API tokens and users carry one.
"""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        """Whether a caller with this role may do what needs ``needed``."""
        return self.rank >= needed.rank

    @classmethod
    def parse(cls, value: str) -> Role:
        """The role named ``value``; ValueError naming the roles there are."""
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise ValueError(f"unknown role {value!r}: one of {', '.join(cls)}") from None


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
