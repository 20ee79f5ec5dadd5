"""The production deployment, checked without a Docker engine: compose.yaml against the Compose
Specification's JSON schema and against Octoprov's own CLI and settings; the Dockerfile's promises;
the systemd units; and the image's entry point (docker/entrypoint.sh) run for real on this machine,
role by role, with the nginx configuration of the `http` service in front of the API."""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import jsonschema
import pytest
import requests
import yaml

from cli import main as cli
from octoprov.settings import Settings, env_name
from octoprov.targets import registry
from tests.support import ROOT
from tests.support.live import free_port
from tests.support.netlab import Lab
from tests.support.processes import stop_group
from tests.support.servers import unavailable
from tests.support.smbconf import sections

QUEUES = registry.queues()

COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
NGINX_TEMPLATE = ROOT / "docker" / "nginx" / "default.conf.template"
SYSTEMD = ROOT / "docs" / "systemd"
GUIDE = ROOT / "docs" / "operations.md"
IMAGE = "octoprov:local"
SETTINGS = {env_name(name) for name in Settings.model_fields}
BIN = Path(sys.executable).parent  # octoprov and python, as the image has them on PATH


# -- compose.yaml ---------------------------------------------------------------------------------------


def compose_schema() -> dict:
    """The Compose Specification's schema, as check-jsonschema ships it (no download in tests)."""
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


def validator() -> jsonschema.protocols.Validator:
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[A-Za-z_]\w*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_]\w*))")


def interpolate(value, env: dict[str, str]):
    """Compose's variable syntax ($$, $VAR, ${VAR}, ${VAR:-default}, ${VAR:?error}) over a loaded file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg, value = match.group("op") or "", match.group("arg"), env.get(name)
        unset = value is None or (op.startswith(":") and value == "")
        if op.endswith("?") and unset:
            raise KeyError(f"{name}: {arg}")
        if op.endswith("-") and unset:
            return arg
        if op.endswith("+"):
            return "" if unset else arg
        return value or ""

    return _VARIABLE.sub(replace, value)


def referenced_variables() -> set[str]:
    return {m.group("braced") or m.group("bare") for m in _VARIABLE.finditer(COMPOSE.read_text())} - {None}


def guide_env() -> dict[str, str]:
    """The variables the operations guide tells the operator to add to .env (its ```sh block with `cat >> .env`)."""
    block = re.search(r"cat >> \.env <<EOF\n(.*?)\nEOF", GUIDE.read_text(), re.DOTALL)
    assert block, "docs/operations.md shows how to fill .env"
    return dict(line.split("=", 1) for line in block.group(1).splitlines() if "=" in line)


def services() -> dict[str, dict]:
    """compose.yaml's services as compose sees them with the .env of the guide."""
    return interpolate(compose(), env_file_as_the_guide_makes_it())["services"]


def octoprov_services() -> dict[str, dict]:
    return {name: service for name, service in services().items() if service.get("image") == IMAGE}


def test_compose_file_follows_the_compose_specification():
    check = validator()
    raw = compose()
    assert not [e.message for e in check.iter_errors(raw)]
    assert not [e.message for e in check.iter_errors(interpolate(raw, env_file_as_the_guide_makes_it()))]


def test_the_schema_check_would_catch_a_mistake():
    check = validator()
    broken = compose()
    broken["services"]["api"]["comand"] = broken["services"]["api"].pop("command")
    assert any("comand" in e.message for e in check.iter_errors(broken))
    broken = compose()
    broken["services"]["api"]["depends_on"]["migrate"]["condition"] = "service_done"
    assert list(check.iter_errors(broken))


def test_the_stack_has_every_service_of_the_issue():
    stack = services()
    assert {"postgres", "redis", "migrate", "api", "beat", "pxe", "http", "samba", "flower"} <= set(stack)
    workers = {name: s for name, s in octoprov_services().items() if s["command"][0] == "worker"}
    pools = [s["command"][s["command"].index("--queues") + 1] for s in workers.values()]
    assert sorted(pools) == sorted(QUEUES), "one worker service per pool"
    for name in ("postgres", "redis"):
        assert stack[name]["healthcheck"] and stack[name]["volumes"]
    assert stack["pxe"]["network_mode"] == "host", "the spec: DHCP broadcasts need the host's network"
    assert stack["migrate"]["command"] == ["db", "upgrade"] and stack["migrate"]["restart"] == "no"
    for name, service in octoprov_services().items():
        if name in ("migrate", "samba"):
            continue
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        if name != "pxe":  # the host's network sees the database at 127.0.0.1, the rest at postgres:5432
            assert service["environment"]["OCTOPROV_DATABASE_URL"].endswith("@postgres:5432/octoprov"), name


def test_the_spec_volume_layout():
    volumes = {v.split(":")[0]: v.split(":")[1] for v in octoprov_services()["api"]["volumes"]}
    assert volumes["./images"] == "/images" and volumes["./drivers"] == "/drivers"
    assert volumes["./answers"] == "/answers"
    http = {v.split(":")[0]: v.split(":")[1] for v in services()["http"]["volumes"]}
    assert {"./images", "./drivers", "./docker/nginx/default.conf.template"} <= set(http)


def cli_command(argv: list[str]) -> tuple[click.Command, dict]:
    """The command ``octoprov ARGV`` runs, with its parsed options: raises click's UsageError as the CLI would."""
    command, ctx, args = cli, click.Context(cli, info_name="octoprov"), list(argv)
    while isinstance(command, click.Group):
        assert args, f"{argv}: a group needs a command"
        name, args = args[0], args[1:]
        sub = command.get_command(ctx, name)
        assert sub is not None, f"{argv}: octoprov has no command {name!r}"
        ctx, command = click.Context(sub, info_name=name, parent=ctx), sub
    return command, command.make_context(ctx.info_name, args, parent=ctx.parent).params


def entrypoint_roles() -> set[str]:
    """The roles docker/entrypoint.sh handles itself rather than handing to octoprov."""
    case = ENTRYPOINT.read_text().split('case "${1:-}" in', 1)[1]
    return {role.strip() for line in re.findall(r"^\s+([\w |]+)\)$", case, re.MULTILINE) for role in line.split("|")}


def test_every_service_command_is_a_command_of_the_cli_or_the_entry_point():
    assert entrypoint_roles() == {"samba", "sh", "bash", "python", "python3"}
    seen = set()
    for name, service in octoprov_services().items():
        argv = service["command"]
        if argv[0] in entrypoint_roles():
            seen.add(argv[0])
            continue
        command, params = cli_command(argv)
        seen.add(command.name)
        if command.name == "worker":
            assert set(params["queues"].split(",")) <= set(QUEUES), name
    assert seen >= {"upgrade", "api", "beat", "worker", "pxe", "flower", "samba"}


def test_the_cli_check_would_catch_a_mistake():
    with pytest.raises(AssertionError):
        cli_command(["workr"])
    with pytest.raises(click.UsageError):
        cli_command(["worker", "--queue", "kvm"])
    with pytest.raises(click.BadParameter):
        cli_command(["api", "--port", "eighty"])


def octoprov_variables_in(text: str) -> set[str]:
    """Every OCTOPROV_* name in ``text``; a prefix written as ``OCTOPROV_WINPE_*`` must start some setting."""
    names = set(re.findall(r"\bOCTOPROV_[A-Z0-9_]+", text))
    prefixes = {name for name in names if name.endswith("_")}
    assert all(any(s.startswith(p) for s in SETTINGS) for p in prefixes), prefixes
    return names - prefixes


def test_every_octoprov_variable_of_the_deployment_is_a_setting():
    files = [COMPOSE, DOCKERFILE, ENTRYPOINT, GUIDE, *SYSTEMD.iterdir()]
    for path in files:
        unknown = octoprov_variables_in(path.read_text()) - SETTINGS
        assert not unknown, f"{path.relative_to(ROOT)} names variables that are no setting: {sorted(unknown)}"
    for name, service in octoprov_services().items():
        environment = {k: v for k, v in service["environment"].items() if k.startswith("OCTOPROV_")}
        assert set(environment) <= SETTINGS, name
        Settings.from_env(environment)  # and every value is one the setting accepts


def test_every_variable_compose_needs_is_in_the_guide():
    documented = guide_env()
    for name in referenced_variables():
        assert name in SETTINGS or name in documented, f"compose.yaml uses ${{{name}}}, which the guide never sets"
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert required <= set(documented), "every variable compose insists on is in the guide's .env recipe"
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        interpolate(compose(), {})


def env_file_as_the_guide_makes_it() -> dict[str, str]:
    """.env as an operator following docs/operations.md has it: .env.example plus the guide's lines."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    generated = {name: re.sub(r"\$\(.*\)", "0123456789abcdef", value) for name, value in guide_env().items()}
    return {**env, **generated}


def test_each_container_sees_its_own_folders_and_servers_despite_env_file():
    """.env (env_file) would override the image's ENV, e.g. OCTOPROV_DATA_DIR=var from .env.example; compose's
    `environment` must win for everything that depends on the container."""
    env_file = env_file_as_the_guide_makes_it()
    for name, service in octoprov_services().items():
        settings = Settings.from_env({**env_file, **service.get("environment", {})})
        mounts = {v.split(":")[1] for v in service.get("volumes", [])}
        assert str(settings.data_dir) in mounts or name == "samba", f"{name}: {settings.data_dir} is no volume"
        if name == "pxe":
            assert settings.boot_server_address and "@127.0.0.1:5432/" in settings.database_url
            continue
        assert str(settings.effective_images_dir) == "/images" and "/images" in mounts, name
        assert str(settings.effective_drivers_dir) == "/drivers", name
        if name != "samba":
            assert settings.database_url.startswith("postgresql://octoprov:") and settings.broker_url, name
            assert settings.effective_public_url == env_file["OCTOPROV_PUBLIC_URL"], name
    api = octoprov_services()["api"]["command"]
    assert api[api.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - comparing


def test_only_pxe_and_samba_run_as_root():
    roots = {name for name, service in octoprov_services().items() if service.get("user", "") in ("0", "0:0", "root")}
    assert roots == {"pxe", "samba"}
    pxe = octoprov_services()["pxe"]
    assert pxe["cap_drop"] == ["ALL"] and set(pxe["cap_add"]) == {"NET_BIND_SERVICE", "NET_RAW"}


# -- Dockerfile ------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the build context (its patterns as used here)."""
    from fnmatch import fnmatch

    ignored = False
    for pattern in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!")
        parts = Path(path).parts
        if any(fnmatch("/".join(parts[:i]), pattern.removeprefix("**/")) or fnmatch(parts[i - 1], pattern)
               for i in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def test_the_image_runs_the_tested_entry_point_as_a_non_root_user():
    steps = dockerfile_instructions()
    entry = [args for op, args in steps if op == "ENTRYPOINT"]
    assert entry == ['["/usr/local/bin/octoprov-entrypoint"]']
    assert ("COPY", "docker/entrypoint.sh /usr/local/bin/octoprov-entrypoint") in steps
    users = [args for op, args in steps if op == "USER"]
    assert users == ["octoprov"], "the final image runs as octoprov"
    assert os.access(ENTRYPOINT, os.X_OK)


def test_the_image_has_ipxe_wimlib_and_a_production_wsgi_server():
    installs = " ".join(args for op, args in dockerfile_instructions() if op == "RUN" and "apt-get install" in args)
    for package in ("ipxe", "wimtools", "libvirt0", "openssh-client", "samba"):
        assert re.search(rf"\b{package}\b", installs), package
    assert "gunicorn" in (ROOT / "setup.cfg").read_text()
    assert "from gunicorn" in (ROOT / "api" / "server.py").read_text()


def test_the_base_image_matches_the_supported_python_and_debian():
    base = re.search(r"ARG PYTHON_IMAGE=python:(\d+)\.(\d+)-slim-(\w+)", DOCKERFILE.read_text())
    required = re.search(r"python_requires = >=(\d+)\.(\d+)", (ROOT / "setup.cfg").read_text())
    assert base and required
    assert (int(base.group(1)), int(base.group(2))) >= (int(required.group(1)), int(required.group(2)))
    assert base.group(3) == "bookworm", "the Debian release whose ipxe, wimtools and libvirt the tests run with"


def test_the_image_labels_name_the_packaged_version():
    """org.opencontainers.image.version is the version pip installs into the image (setup.cfg's)."""
    text = DOCKERFILE.read_text()
    label = re.search(r"ARG VERSION=(\S+)", text)
    packaged = re.search(r"^version = (\S+)$", (ROOT / "setup.cfg").read_text(), re.MULTILINE)
    assert label and packaged and label.group(1) == packaged.group(1)
    for key in ("version", "revision", "source"):
        assert re.search(rf'org\.opencontainers\.image\.{key}="\$\{{{key.upper()}\}}"', text), key


def test_every_file_the_image_copies_is_in_the_build_context():
    for op, args in dockerfile_instructions():
        if op != "COPY" or args.startswith("--from"):
            continue
        *sources, _ = args.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not dockerignored(source), f"{source} is excluded by .dockerignore"
    for secret_or_bulk in (".env", "images/x.wim", "drivers/pack/a.inf", "var/secret.key", ".venv/bin/python"):
        assert dockerignored(secret_or_bulk), secret_or_bulk


def test_the_debian_packages_of_the_image_exist():
    if shutil.which("apt-cache") is None:
        pytest.skip("apt-cache is not installed")
    installs = [args for op, args in dockerfile_instructions() if op == "RUN" and "apt-get install" in args]
    packages = {word for args in installs
                for word in args.split("--no-install-recommends", 1)[1].split("&&")[0].split()}
    if subprocess.run(["apt-cache", "show", "bash"], capture_output=True).returncode != 0:
        pytest.skip("apt's package lists are empty here (apt-get update)")
    missing = [p for p in sorted(packages)
               if subprocess.run(["apt-cache", "show", p], capture_output=True).returncode != 0]
    assert not missing


# -- systemd units ---------------------------------------------------------------------------------------


def unit_exec(unit: Path) -> list[str]:
    line = next(line for line in unit.read_text().splitlines() if line.startswith("ExecStart="))
    return line.removeprefix("ExecStart=").split()


@pytest.mark.parametrize("unit", sorted(p.name for p in SYSTEMD.glob("*.service")))
def test_systemd_units_run_real_commands_and_pass_systemd_analyze(unit, tmp_path):
    path = SYSTEMD / unit
    argv = unit_exec(path)
    assert argv[0] == "/opt/octoprov/.venv/bin/octoprov"
    cli_command([arg.replace("%H", "host") for arg in argv[1:]])
    text = path.read_text()
    env_file = re.search(r"^EnvironmentFile=/etc/octoprov/(\S+)$", text, re.MULTILINE)
    assert env_file and (SYSTEMD / f"{Path(env_file.group(1)).stem}.env.example").is_file(), \
        "each unit's settings file has its example beside it"
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    copy = tmp_path / unit  # the same unit, pointed at this checkout's virtualenv and a scratch /etc/octoprov
    copy.write_text(text.replace("/opt/octoprov/.venv/bin", str(BIN)).replace("/etc/octoprov/", f"{tmp_path}/"))
    (tmp_path / env_file.group(1)).write_text("")
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if unit in line and ("Unknown" in line or "ignoring" in line or "not executable" in line)]
    assert not complaints and result.returncode == 0, result.stdout + result.stderr


def test_the_units_settings_examples_are_loadable():
    for example in SYSTEMD.glob("*.env.example"):
        pairs = dict(line.split("=", 1) for line in example.read_text().splitlines()
                     if line and not line.startswith("#"))
        assert set(pairs) <= SETTINGS, example.name
        Settings.from_env(pairs)


# -- the entry point, run outside the container ----------------------------------------------------------


def entry_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment compose gives a container, with this machine's folders and programs."""
    for folder in ("images", "drivers"):
        (tmp_path / folder).mkdir(exist_ok=True)
    return {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
            "OCTOPROV_DATA_DIR": str(tmp_path / "var"), "OCTOPROV_IMAGES_DIR": str(tmp_path / "images"),
            "OCTOPROV_DRIVERS_DIR": str(tmp_path / "drivers"), "OCTOPROV_PUBLIC_URL": "http://192.0.2.10:8080",
            **extra}


def entry(*argv: str, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(ENTRYPOINT), *argv], env=env, capture_output=True, text=True, timeout=120,
                          check=check, cwd=env["HOME"])


def start_entry(*argv: str, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([str(ENTRYPOINT), *argv], env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=env["HOME"])


def wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 60, **kwargs) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text(errors='replace')}"
        with contextlib.suppress(requests.ConnectionError):
            return requests.get(url, timeout=5, **kwargs)
        assert time.monotonic() < deadline, f"{url} did not answer:\n{log.read_text(errors='replace')}"
        time.sleep(0.2)


def test_other_commands_go_to_octoprov_or_run_as_given(tmp_path):
    env = entry_env(tmp_path)
    assert entry("settings", "example", env=env).stdout == subprocess.run(
        [str(BIN / "octoprov"), "settings", "example"], env=env, capture_output=True, text=True, check=True).stdout
    assert entry("sh", "-c", "echo inside", env=env).stdout == "inside\n"
    assert entry("--version", env=env).stdout.startswith("octoprov")
    assert entry("no-such-role", env=env, check=False).returncode == 2


@pytest.mark.postgres
def test_migrations_run_once_and_again_harmlessly(tmp_path, postgres_server):
    env = entry_env(tmp_path, OCTOPROV_DATABASE_URL=postgres_server.create_database())
    first = entry("db", "upgrade", env=env)
    assert "database at revision head" in first.stdout
    assert entry("db", "upgrade", env=env).stdout == first.stdout  # a second `compose up` changes nothing


def nginx_conf(workdir: Path, port: int, api_port: int, images: Path, drivers: Path) -> Path:
    """The http service's configuration as nginx's image renders it (${FILES_*} and the resolvers filled in),
    in an nginx.conf like the image's own around it; run as root here, so the workers may read pytest's private
    folders. The API is an address here, which nginx never asks the resolver about."""
    values = {"FILES_PORT": str(port), "FILES_API": f"127.0.0.1:{api_port}", "FILES_IMAGES": str(images),
              "FILES_DRIVERS": str(drivers), "NGINX_LOCAL_RESOLVERS": "127.0.0.1"}
    server = re.sub(r"\$\{(FILES_\w+|NGINX_LOCAL_RESOLVERS)\}", lambda m: values[m.group(1)],
                    NGINX_TEMPLATE.read_text())
    assert "${" not in server.replace("${FILES_*}", "")
    (workdir / "default.conf").write_text(server)
    temp = workdir / "temp"
    temp.mkdir()
    conf = workdir / "nginx.conf"
    conf.write_text(f"""
user root;
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log info;
events {{ worker_connections 128; }}
http {{
    access_log {workdir}/access.log;
    default_type application/octet-stream;
    client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy; fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;
    include {workdir}/default.conf;
}}
""")
    return conf


@pytest.mark.postgres
def test_api_behind_the_http_service(tmp_path, postgres_server):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        unavailable("nginx is not installed (Debian package nginx-light)")
    if os.geteuid() != 0:
        pytest.skip("runs nginx as root, so that its workers can read pytest's folders")
    api_port, port = free_port(), free_port()
    env = entry_env(tmp_path, OCTOPROV_DATABASE_URL=postgres_server.create_database(), OCTOPROV_API_WORKERS="1")
    entry("db", "upgrade", env=env)
    token = entry("token", "create", "deployment-test", env=env).stdout.strip()
    images, drivers = tmp_path / "images", tmp_path / "drivers"
    wim = bytes(range(256)) * 8192  # 2 MiB
    (images / "windows").mkdir()
    (images / "windows" / "boot.wim").write_bytes(wim)
    (drivers / "dell").mkdir()
    (drivers / "dell" / "net.inf").write_text("[Version]\n")
    (tmp_path / "outside.txt").write_text("not for machines")
    (images / "escape.txt").symlink_to(tmp_path / "outside.txt")
    api = start_entry("api", "--host", "127.0.0.1", "--port", str(api_port), env=env, log=tmp_path / "api.out")
    server = None
    try:
        assert wait_http(f"http://127.0.0.1:{api_port}/api/v1/swagger.json", api, tmp_path / "api.out").ok
        server = subprocess.Popen([nginx, "-c", str(nginx_conf(tmp_path, port, api_port, images, drivers))],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        swagger = wait_http(f"{base}/api/v1/swagger.json", server, tmp_path / "error.log")
        assert swagger.status_code == 200 and swagger.json()["info"]

        part = requests.get(f"{base}/boot/images/windows/boot.wim", headers={"Range": "bytes=1000-1999"}, timeout=10)
        assert part.status_code == 206 and part.content == wim[1000:2000]
        assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(wim)}"
        whole = requests.get(f"{base}/boot/images/windows/boot.wim", timeout=10)
        assert whole.content == wim and whole.headers["Accept-Ranges"] == "bytes"
        assert requests.get(f"{base}/boot/drivers/dell/net.inf", timeout=10).text == "[Version]\n"
        access = (tmp_path / "api.out").read_text() + _read(env, "access.log")
        assert "boot.wim" not in access, "boot files come from nginx, not through the API"
        for refused in ("/boot/images/", "/boot/images/windows/", "/boot/images/escape.txt",
                        "/boot/images/../outside.txt", "/boot/images/%2e%2e/outside.txt"):
            answer = requests.get(base + refused, timeout=10)
            assert answer.status_code in (403, 404) and "not for machines" not in answer.text, refused

        headers = {"Authorization": f"Bearer {token}"}
        upload = requests.post(f"{base}/api/v1/provisioning/images/upload", headers={
            **headers, "Content-Type": "application/octet-stream"}, data=wim * 2, timeout=60, params={
            "name": "Upload", "osType": "windows", "imagePath": "uploaded/install.wim"})
        assert upload.status_code == 201, upload.text  # 4 MiB: more than nginx's default 1 MiB body limit
        assert (images / "uploaded" / "install.wim").read_bytes() == wim * 2
        files = requests.get(f"{base}/api/v1/provisioning/pxe/files/0123456789abcdef/autounattend.xml", timeout=10)
        assert files.status_code == 404 and files.headers["Content-Type"].startswith("application/json"), \
            "a task's answer files are the API's to give"
    finally:
        if server is not None:
            stop_group(server, grace=10)
        stop_group(api)


def _read(env: dict, name: str) -> str:
    path = Path(env["OCTOPROV_DATA_DIR"]) / "log" / name
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.mark.redis
def test_flower_role_asks_for_its_password(tmp_path, redis_url):
    port = free_port()
    env = entry_env(tmp_path, OCTOPROV_BROKER_URL=redis_url, FLOWER_BASIC_AUTH="admin:s3cret")
    flower = start_entry("flower", "--address", "127.0.0.1", "--port", str(port), env=env, log=tmp_path / "f.out")
    try:
        assert wait_http(f"http://127.0.0.1:{port}/", flower, tmp_path / "f.out").status_code == 401
        assert requests.get(f"http://127.0.0.1:{port}/", auth=("admin", "s3cret"), timeout=10).status_code == 200
    finally:
        stop_group(flower)


def stub(folder: Path, name: str, script: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("#!/bin/sh\n" + script)
    (folder / name).chmod(0o755)


def test_samba_role_generates_a_checked_configuration_and_runs_smbd(tmp_path):
    if shutil.which("testparm") is None:
        unavailable("testparm is not installed (Debian package samba-common-bin)")
    stubs, conf = tmp_path / "stubs", tmp_path / "smb.conf"
    # smbd itself is not installed on the test machines: a stand-in records how it would be started
    stub(stubs, "smbd", f'printf "%s\\n" "$@" > {tmp_path}/smbd.args\n')
    env = entry_env(tmp_path, SAMBA_CONF=str(conf), OCTOPROV_BOOT_SERVER_ADDRESS="192.0.2.10")
    env["PATH"] = f"{stubs}:{env['PATH']}"
    entry("samba", env=env)
    assert (tmp_path / "smbd.args").read_text().split() == [
        "--foreground", "--no-process-group", "--debug-stdout", f"--configfile={conf}"]
    shares = sections(conf.read_text())
    assert shares["images"]["path"] == str(tmp_path / "images") and shares["images"]["read only"] == "yes"
    assert shares["drivers"]["path"] == str(tmp_path / "drivers") and shares["images"]["guest ok"] == "yes"
    assert not (tmp_path / "smb.conf.new").exists()


def test_samba_role_adds_the_winpe_account(tmp_path):
    if shutil.which("testparm") is None:
        unavailable("testparm is not installed (Debian package samba-common-bin)")
    stubs, conf = tmp_path / "stubs", tmp_path / "smb.conf"
    stub(stubs, "smbd", "exit 0\n")
    stub(stubs, "id", "exit 1\n")  # no such user yet: the stand-ins below record what would be done
    stub(stubs, "useradd", f'printf "%s\\n" "$@" > {tmp_path}/useradd.args\n')
    stub(stubs, "smbpasswd", f'printf "%s\\n" "$@" > {tmp_path}/smbpasswd.args; cat > {tmp_path}/smbpasswd.in\n')
    env = entry_env(tmp_path, SAMBA_CONF=str(conf), OCTOPROV_BOOT_SERVER_ADDRESS="192.0.2.10",
                    OCTOPROV_WINPE_SHARE_USER="winpe", OCTOPROV_WINPE_SHARE_PASSWORD="Read-0nly.pw")
    env["PATH"] = f"{stubs}:{env['PATH']}"
    entry("samba", env=env)
    assert (tmp_path / "useradd.args").read_text().split()[-1] == "winpe"
    assert (tmp_path / "smbpasswd.args").read_text().split() == ["-c", str(conf), "-s", "-a", "winpe"]
    assert (tmp_path / "smbpasswd.in").read_text() == "Read-0nly.pw\nRead-0nly.pw\n"
    assert sections(conf.read_text())["images"]["valid users"] == "winpe"
    del env["OCTOPROV_WINPE_SHARE_PASSWORD"]
    refused = entry("samba", env=env, check=False)
    assert refused.returncode != 0 and "OCTOPROV_WINPE_SHARE_PASSWORD" in refused.stderr


def test_pxe_role_serves_with_only_the_capabilities_compose_grants(tmp_path):
    """As compose runs it: root with every capability dropped but NET_BIND_SERVICE and NET_RAW, here in a
    private network namespace pair (tests/support/netlab.py); a TFTP client on the other side fetches iPXE."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces and ports 67/69 need root")
    for program in ("ip", "setpriv", "tftp", "ss"):
        if shutil.which(program) is None:
            unavailable(f"{program} is not installed")
    ipxe = Path("/usr/lib/ipxe/undionly.kpxe")
    if not ipxe.is_file():
        unavailable("the iPXE binaries are missing (Debian package ipxe)")
    env = entry_env(tmp_path, OCTOPROV_BOOT_SERVER_ADDRESS="198.51.100.2", OCTOPROV_PUBLIC_URL="http://198.51.100.2:8080")
    entry("db", "upgrade", env=env)
    drop = ("setpriv", "--inh-caps=-all", "--bounding-set=-all,+net_bind_service,+net_raw", "--")
    with Lab(tmp_path) as lab:
        pxe = lab.start(lab.boot, [*drop, str(ENTRYPOINT), "pxe"], "pxe.out", env=env, cwd=tmp_path)
        lab.wait_listening(lab.boot, "u", {67, 69, 4011}, process=pxe)
        effective = re.search(r"^CapEff:\s*(\w+)", Path(f"/proc/{pxe.pid}/status").read_text(), re.MULTILINE)
        assert int(effective.group(1), 16) == (1 << 10) | (1 << 13), "CAP_NET_BIND_SERVICE and CAP_NET_RAW only"
        fetched = tmp_path / "undionly.kpxe"
        lab.run(lab.site, "tftp", "-m", "binary", "198.51.100.2", "-c", "get", "undionly.kpxe", str(fetched))
        assert fetched.read_bytes() == ipxe.read_bytes()
