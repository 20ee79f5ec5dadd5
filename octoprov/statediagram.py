"""The task state machine drawn from ``octoprov.states``, so the picture in docs/states.md cannot drift.

``make states`` (``octoprov states``) writes ``markdown()`` to docs/states.md; tests/integration/test_states.py
fails when the file and the declared transitions differ.
"""

from __future__ import annotations

from octoprov import states


def _label(state: str) -> str:
    """The node text: name and description, quoted (mermaid's ``id : text`` form stops at ``:`` and ``;``)."""
    text = f"{state}: {states.DESCRIPTIONS[state]}"
    return text.replace('"', "'")


def _ordered(targets: frozenset[str]) -> list[str]:
    return [state for state in states.ALL if state in targets]


def mermaid() -> str:
    """A mermaid ``stateDiagram-v2``: every allowed transition one edge, final states leading to the end."""
    lines = ["stateDiagram-v2"]
    lines += [f'    state "{_label(state)}" as {state}' for state in states.ALL]
    lines.append(f"    [*] --> {states.PENDING}")
    for source in states.ALL:
        lines += [f"    {source} --> {target}" for target in _ordered(states.TRANSITIONS[source])]
    lines += [f"    {state} --> [*]" for state in states.ALL if state in states.FINAL]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """The docs/states.md page: the diagram and a table of the states."""
    rows = []
    for state in states.ALL:
        targets = ", ".join(f"`{target}`" for target in _ordered(states.TRANSITIONS[state])) or "—"
        final = "yes" if state in states.FINAL else "no"
        rows.append(f"| `{state}` | {_cell(states.DESCRIPTIONS[state])} | {final} | {targets} |")
    return "\n".join([
        "# Task states",
        "",
        "Generated from `octoprov/states.py` by `make states`: edit the transitions there, not this page.",
        "Every change of a task's state is one conditional UPDATE",
        "(`UPDATE provisioning_tasks SET status = :target WHERE id = :id AND status IN (:allowed sources)`),",
        "so two workers, or a worker and a late callback, can never both move the same task: the loser's",
        "update matches no row and it learns it lost.",
        "",
        "```mermaid",
        mermaid().rstrip("\n"),
        "```",
        "",
        "| State | Meaning | Final | May move to |",
        "|---|---|---|---|",
        *rows,
        "",
    ])
