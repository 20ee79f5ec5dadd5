"""smb.conf read back into sections, to check what the WinPE share's configuration says."""

from __future__ import annotations


def sections(conf: str) -> dict[str, dict[str, str]]:
    parsed, current = {}, None
    for line in conf.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = parsed.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current[key.strip()] = value.strip()
    return parsed
