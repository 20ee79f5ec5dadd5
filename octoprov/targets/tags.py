"""The tag that marks a VM as a task's own, the same on every hypervisor that keeps a free-text note
with a VM (Hyper-V's Notes, vSphere's annotation): ``octoprov-task:<id>``, followed by `` creating``
while the VM is being configured, so an interrupted attempt's half-made VM is told from a complete one.
A VM without the tag, or with another task's, is never touched."""

from __future__ import annotations

TAG = "octoprov-task:"
CREATING = " creating"  # the tag while the VM is being configured: an interrupted attempt left it half-made


def task_tag(task_id: int) -> str:
    return f"{TAG}{task_id}"


def task_of(notes: str | None) -> tuple[int | None, bool]:
    """(task id, complete) from a VM's note; (None, False) when no Octoprov task made it."""
    text = (notes or "").strip()
    if not text.startswith(TAG):
        return None, False
    number, _, rest = text[len(TAG):].partition(" ")
    return (int(number), not rest) if number.isdigit() else (None, False)
