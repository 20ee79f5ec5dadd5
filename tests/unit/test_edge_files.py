"""The edge's boot-file cache on its own: what is kept, fetched, evicted and left behind."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

import pytest

from octoprov.edge.files import FileCache, NotCached


def serving(files: dict[str, bytes], fetched: list[str]):
    def fetch(path: str, out: BinaryIO) -> int:
        fetched.append(path)
        if path not in files:
            raise FileNotFoundError(path)
        out.write(files[path])
        return len(files[path])

    return fetch


def test_a_fetch_an_earlier_edge_left_unfinished_is_removed_and_the_kept_files_stay(tmp_path: Path):
    fetched: list[str] = []
    cache = FileCache(tmp_path, 100, serving({"images/a": b"a" * 10}, fetched))
    cache.get("images/a")
    (tmp_path / "partial" / "tmpkilled").write_bytes(b"x" * 50)  # the edge was killed while fetching a file
    again = FileCache(tmp_path, 100, serving({}, fetched))
    assert list((tmp_path / "partial").iterdir()) == []
    assert again.get("images/a").read_bytes() == b"a" * 10 and fetched == ["images/a"] and again.size == 10


def test_a_failed_fetch_keeps_nothing_and_the_least_recently_used_file_goes_first(tmp_path: Path):
    fetched: list[str] = []
    files = {f"images/{name}": hashlib.sha256(name.encode()).digest()[:10] for name in "abc"}
    cache = FileCache(tmp_path, 20, serving(files, fetched))
    with pytest.raises(NotCached):
        cache.get("images/missing")
    assert list((tmp_path / "partial").iterdir()) == []
    cache.get("images/a")
    cache.get("images/b")
    cache.get("images/a")
    cache.get("images/c")  # 30 bytes in a cache of 20: b goes
    assert sorted(path.name for path in (tmp_path / "files" / "images").iterdir()) == ["a", "c"]
    with pytest.raises(ValueError):
        cache.get("images/../../outside")
