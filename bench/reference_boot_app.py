"""The /pxe/boot storm's reference: bare Flask under gunicorn (the API's worker class, processes and threads)
answering each MAC with a 320-byte iPXE script taken from a dict: what serving a boot script costs when
nothing is looked up, decrypted or written. Run by bench/pxe_storm.py as
``gunicorn bench.reference_boot_app:app``; REFERENCE_MACHINES sets how many MACs it knows."""

from __future__ import annotations

import os

from flask import Flask, Response, request

SCRIPT_BYTES = 320


def _script(n: int) -> str:
    head = (f"#!ipxe\nkernel http://192.0.2.1/boot/tiny/vmlinuz initrd=initrd.gz console=ttyS0 "
            f"inst.ks=http://192.0.2.1/ks/{n:06d}\ninitrd http://192.0.2.1/boot/tiny/initrd.gz\nboot\n")
    return head + "#" * (SCRIPT_BYTES - len(head) - 1) + "\n"


SCRIPTS = {f"52-54-00-{n >> 16:02x}-{(n >> 8) & 255:02x}-{n & 255:02x}": _script(n)
           for n in range(int(os.environ.get("REFERENCE_MACHINES", "1000")))}

app = Flask(__name__)


@app.get("/api/v1/provisioning/pxe/boot")
def boot() -> Response:
    script = SCRIPTS.get(request.args.get("mac", ""), "#!ipxe\nexit\n")
    return Response(script, mimetype="text/plain")
