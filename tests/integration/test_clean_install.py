"""A production install has every module each role imports.

The image gets ``pip install .`` without extras, while the dev venv also holds the test extras, which can
hide a missing requirement: kombu's Redis transport imports ``packaging``, which kombu declares only in its
``redis`` extra, and worker, beat and flower died at start in the image. So the project is installed here
into a virtualenv of its own, from a copy of the sources, and every check runs there with its working folder
outside the checkout and PYTHONPATH unset: nothing can be found in the checkout or the dev venv by accident.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.smbconf import sections

# the first test builds the venv (about 25 s here, with or without pip's cache); a slow index or a
# libvirt-python compiled on a slow machine takes longer than the suite's default of 600 s allows for
pytestmark = pytest.mark.timeout(900)

PACKAGES = ("octoprov", "api", "workers", "cli")
# what the Dockerfile copies into the image before installing it; nothing else of the checkout is installed
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", *PACKAGES)
# Modules the walk leaves out: importing a __main__ runs the CLI, and alembic runs the migration environment
# only inside a migration (test_the_database_migrates runs it).
NOT_IMPORTED = ("octoprov.migrations.env",)
# Nothing listens on port 1: the checks only load the Redis code, and one that tried to connect would fail.
REDIS_BROKER = "redis://127.0.0.1:1/0"
# Variables that would make the venv's Python look elsewhere than its own site-packages.
UNSET = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")

# Imports every module below the given packages, and the modules they load by name
# (importlib.import_module("...") with a literal: the drivers' libraries); prints what failed, as JSON.
WALK = r"""
import ast, importlib, json, pkgutil, sys

packages, skipped = json.loads(sys.argv[1])
failures, locations, walked, by_name = {}, {}, [], set()


def failed(name, exc):
    failures[name] = f"{type(exc).__name__}: {exc}"


def load(name):
    try:
        return importlib.import_module(name)
    except Exception as exc:
        failed(name, exc)
        return None


def named_imports(module):
    path = getattr(module, "__file__", None)
    if not path or not path.endswith(".py"):
        return
    with open(path, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str) and not node.args[0].value.startswith(".")
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
            by_name.add(node.args[0].value)


for top in packages:
    package = load(top)
    if package is None:
        continue
    locations[top] = package.__file__
    named_imports(package)
    for info in pkgutil.walk_packages(package.__path__, top + ".",
                                      onerror=lambda name: failed(name, sys.exc_info()[1])):
        if info.name.rpartition(".")[2] == "__main__" or info.name in skipped:
            continue
        walked.append(info.name)
        module = load(info.name)
        if module is not None:
            named_imports(module)
for name in sorted(by_name):
    load(name)
print(json.dumps({"failures": failures, "locations": locations, "walked": walked, "by_name": sorted(by_name)}))
"""

CELERY = r"""
import json

from celery.concurrency import get_implementation
from kombu.transport import resolve_transport

from workers.app import app

transport = resolve_transport("redis")  # what `octoprov worker`, `beat` and `flower` load for a redis:// broker
app.loader.import_default_modules()  # the task modules a worker imports at start
import celery.apps.beat, celery.apps.worker  # what app.worker_main() and app.start(["beat", ...]) run

print(json.dumps({
    "broker": app.conf.broker_url,
    "transport": f"{transport.__module__}.{transport.__qualname__}",
    "backend": type(app.backend).__name__,
    "pool": get_implementation("prefork").__name__,
    "tasks": sorted(name for name in app.tasks if name.startswith("octoprov.")),
}))
"""

API = r"""
import json

import gunicorn.workers.gthread  # the worker class api.server.serve() configures
from api import create_app
from api.server import serve

app = create_app()
swagger = app.test_client().get("/api/v1/swagger.json")
print(json.dumps({"status": swagger.status_code, "paths": len(swagger.get_json()["paths"])}))
"""


@dataclass(frozen=True)
class CleanVenv:
    """A virtualenv holding the project as ``pip install .`` leaves it, and an empty folder to run in."""

    root: Path
    cwd: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def environ(self, settings: dict[str, str]) -> dict[str, str]:
        """This process's environment (pip's configuration, proxies) without the variables that point Python
        elsewhere or configure Octoprov or Flower, the venv first on PATH, and the given settings."""
        environ = {name: value for name, value in os.environ.items()
                   if name not in UNSET and not name.startswith(("OCTOPROV_", "FLOWER_"))}
        environ["PATH"] = os.pathsep.join([str(self.bin), environ.get("PATH", os.defpath)])
        return environ | settings

    def run(self, args: list[str], settings: dict[str, str], timeout: float = 120) -> str:
        """Run a command of the venv and return its standard output; fail with both outputs if it fails."""
        result = subprocess.run([str(self.bin / args[0]), *args[1:]], cwd=self.cwd, env=self.environ(settings),
                                capture_output=True, text=True, timeout=timeout, check=False)
        assert result.returncode == 0, (f"{' '.join(args)} exited with {result.returncode}\n"
                                        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
        return result.stdout

    def python(self, code: str, settings: dict[str, str], *args: str) -> str:
        return self.run(["python", "-c", code, *args], settings)


def copy_sources(target: Path) -> None:
    """The sources the image installs, without the checkout's build leftovers (build/, egg-info, bytecode)."""
    target.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, target / name)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> CleanVenv:
    base = tmp_path_factory.mktemp("clean-install")
    copy_sources(base / "source")
    (base / "run").mkdir()
    venv = CleanVenv(root=base / "venv", cwd=base / "run")
    subprocess.run([sys.executable, "-m", "venv", str(venv.root)], check=True, timeout=120)
    # non-editable and without extras, like the image; pip's cache and configured indexes make it quick
    venv.run(["python", "-m", "pip", "install", "--quiet", "--no-input", str(base / "source")], {}, timeout=840)
    return venv


@pytest.fixture
def settings(tmp_path: Path) -> dict[str, str]:
    """Octoprov's folders in a temporary place, as the image's environment sets them."""
    folders = {"OCTOPROV_DATA_DIR": tmp_path / "data", "OCTOPROV_IMAGES_DIR": tmp_path / "images",
               "OCTOPROV_DRIVERS_DIR": tmp_path / "drivers"}
    for folder in folders.values():
        folder.mkdir()
    return {name: str(folder) for name, folder in folders.items()}


def test_every_module_of_the_packages_imports(venv: CleanVenv, settings: dict[str, str]) -> None:
    report = json.loads(venv.python(WALK, settings, json.dumps([PACKAGES, NOT_IMPORTED])))
    failures = "\n".join(f"  {name}: {error}" for name, error in sorted(report["failures"].items()))
    assert not failures, f"modules that do not import after `pip install .`:\n{failures}"
    site = venv.root.resolve()
    for package in PACKAGES:  # from the venv's site-packages, not from the checkout or its copy
        assert Path(report["locations"][package]).resolve().is_relative_to(site), report["locations"]
    assert len(report["walked"]) > 50
    assert {"libvirt", "sushy"} <= set(report["by_name"])  # the KVM and Redfish drivers load them by name


def test_the_cli_answers_help(venv: CleanVenv, settings: dict[str, str]) -> None:
    shown = venv.run(["octoprov", "--help"], settings)
    for command in ("api", "worker", "beat", "pxe", "flower", "db"):
        assert f"  {command} " in shown


def test_the_api_app_builds_and_serves_its_openapi_document(venv: CleanVenv, settings: dict[str, str]) -> None:
    served = json.loads(venv.python(API, settings))
    assert served["status"] == 200
    assert served["paths"] > 10


def test_the_celery_app_loads_the_redis_transport(venv: CleanVenv, settings: dict[str, str]) -> None:
    """The import that failed in the image: kombu's Redis transport needs ``packaging``."""
    loaded = json.loads(venv.python(CELERY, settings | {"OCTOPROV_BROKER_URL": REDIS_BROKER}))
    assert loaded["broker"] == REDIS_BROKER
    assert loaded["transport"] == "kombu.transport.redis.Transport"
    assert loaded["backend"] == "RedisBackend"
    assert loaded["pool"] == "TaskPool"
    assert "octoprov.check_deadlines" in loaded["tasks"]


def test_flower_loads_as_a_celery_command(venv: CleanVenv, settings: dict[str, str]) -> None:
    """``octoprov flower`` runs ``app.start(["flower", ...])``: celery finds flower's command by entry point."""
    redis = settings | {"OCTOPROV_BROKER_URL": REDIS_BROKER}
    venv.python("import flower.command", redis)
    shown = venv.python('from workers.app import app; app.start(["flower", "--help"])', redis)
    assert "monitoring and administrating Celery clusters" in shown


def test_the_pxe_service_imports(venv: CleanVenv, settings: dict[str, str]) -> None:
    venv.python("from octoprov.netboot import service; assert callable(service.run)", settings)


def test_samba_prints_the_smb_conf(venv: CleanVenv, settings: dict[str, str]) -> None:
    """As docker/entrypoint.sh runs it for the samba role, with only the settings in the environment."""
    conf = sections(venv.run(["python", "-m", "octoprov.answerfiles.samba"], settings))
    assert conf["global"]["server role"] == "standalone server"
    shared = {section.get("path") for section in conf.values()}
    assert {settings["OCTOPROV_IMAGES_DIR"], settings["OCTOPROV_DRIVERS_DIR"]} <= shared


def test_the_database_migrates(venv: CleanVenv, settings: dict[str, str]) -> None:
    """The migrate role (``octoprov db upgrade``) on SQLite, from the installed migration scripts."""
    venv.run(["octoprov", "db", "upgrade"], settings)
    scripts = Path(venv.python("from octoprov.migrate import MIGRATIONS_DIR; print(MIGRATIONS_DIR)", settings).strip())
    assert any((scripts / "versions").glob("*.py")), "the migration scripts are installed"
    with contextlib.closing(sqlite3.connect(Path(settings["OCTOPROV_DATA_DIR"]) / "octoprov.sqlite")) as database:
        assert database.execute("SELECT version_num FROM alembic_version").fetchall()


def test_a_postgresql_url_finds_its_driver(venv: CleanVenv, settings: dict[str, str]) -> None:
    """``postgresql://`` means psycopg 3 here; building the engine loads the driver, and nothing connects."""
    driver = venv.python("from octoprov.db import make_engine; "
                         "print(make_engine('postgresql://octoprov@127.0.0.1:1/octoprov').dialect.driver)", settings)
    assert driver.strip() == "psycopg"
