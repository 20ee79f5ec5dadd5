"""The answers the centre prepared for the site's machines, by MAC: the last copy fetched, kept on disk so the
edge answers from it after a restart and while the WAN is down. A MAC the copy does not know boots its disk:
the edge never invents an install."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octoprov.edge.store import read_json, write_json
from octoprov.netboot import ipxe
from octoprov.netboot.bootconfig import BootAnswer, local_boot
from octoprov.netboot.chain import BootChain


@dataclass(frozen=True)
class Prepared:
    answer: BootAnswer
    chain: BootChain


class PreparedAnswers:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        kept = read_json(path)
        self._copy: dict[str, Any] = kept if isinstance(kept, dict) and isinstance(kept.get("answers"), dict) else {}
        self.fetched_at: float | None = None  # monotonic time of the last successful fetch (this run)

    @property
    def boot_url(self) -> str | None:
        return self._copy.get("bootUrl")

    @property
    def generated_at(self) -> str | None:
        return self._copy.get("generatedAt")

    def replace(self, copy: dict[str, Any]) -> None:
        """The centre's new copy: on disk first, then served."""
        if not isinstance(copy.get("answers"), dict):
            raise ValueError("the centre's answers hold no 'answers' object")
        write_json(self.path, copy)
        with self._lock:
            self._copy = copy
            self.fetched_at = time.monotonic()

    def macs(self) -> list[str]:
        return list(self._copy.get("answers", {}))

    def summary(self) -> dict[str, dict[str, Any]]:
        """Task and action by MAC, without scripts or tokens: what the status page shows, so an operator (or a
        test) sees which machines the edge could boot now, also while the WAN is down."""
        return {mac: {"taskId": found.answer.task_id, "action": found.answer.action}
                for mac in self.macs() if (found := self.get(mac)) is not None}

    def get(self, mac: str) -> Prepared | None:
        found = self._copy.get("answers", {}).get(mac)
        if not isinstance(found, dict):
            return None
        try:
            answer = BootAnswer(action=str(found["action"]), script=str(found["script"]),
                                document=dict(found["document"]), task_id=int(found["taskId"]),
                                grub=str(found.get("grub") or ""))
            return Prepared(answer, BootChain(found.get("chain") or BootChain.IPXE))
        except (KeyError, TypeError, ValueError):
            return None

    def answer(self, mac: str, site: str) -> BootAnswer:
        """The prepared answer for ``mac``, or a local boot saying why there is none."""
        found = self.get(mac)
        if found is not None:
            return found.answer
        return local_boot(f"No prepared boot answer for this MAC at site {site}")

    def chain(self, mac: str) -> BootChain | None:
        found = self.get(mac)
        return None if found is None else found.chain


def chain_script(boot_url: str, mac: str | None) -> str:
    """The first script iPXE runs at the site: it fetches the machine's boot script from the edge."""
    return ipxe.render("chain", boot_url=boot_url + "/api/v1/provisioning/pxe/boot", mac=mac)

