# Octoprov developer and CI tasks (GNU make). `make` or `make help` lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
# Two targets may install Debian packages (system-packages, .venv): never let apt-get run twice at once.
.NOTPARALLEL:
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv

# The container test's engine (tests/support/containers.py): podman as root with runc, netavark and iptables
# inside the test's namespaces, docker-compose for compose.yaml, mmdebstrap for the base image (no registry).
# Never docker.io: its daemon rewrites the host's firewall (installs here never take recommends, which is
# how docker-compose would pull it in).
CONTAINER_DEB_PACKAGES := podman runc netavark aardvark-dns catatonit conmon iptables mmdebstrap docker-compose
# The vSphere target's peer in the tests: govmomi's vCenter simulator, built offline from Debian's source of
# govmomi with Debian's Go (tests/support/vcsim.py; `make vcsim`), cached under .cache/vcsim/.
VCSIM_DEB_PACKAGES := golang-go golang-github-vmware-govmomi-dev
# Debian packages the test suite and the full stack need; installed by `make system-packages` if missing.
DEB_PACKAGES := postgresql redis-server wimtools ipxe tftp-hpa tftpd-hpa busybox-static curl qemu-system-x86 ipxe-qemu ovmf dnsmasq-base iproute2 libvirt-clients libvirt-daemon-system libvirt-daemon-driver-qemu qemu-utils openssh-server libxml2-utils cloud-init syslinux syslinux-common isolinux mtools fdisk samba-common-bin samba-ad-dc samba-ad-provision smbclient nginx-light chromium wrk \
  $(VCSIM_DEB_PACKAGES) $(CONTAINER_DEB_PACKAGES)
# Debian packages `make bench` needs: a load generator and reference servers (the test suite's smoke run of
# the benchmarks needs them too, so DEB_PACKAGES has them as well).
BENCH_DEB_PACKAGES := wrk nginx-light
# Debian packages needed to build the virtualenv: python3-venv (only checked when the interpreter lacks
# ensurepip) and the toolchain pip uses to compile libvirt-python, which PyPI ships only as source.
VENV_DEB_PACKAGES := python3-venv python3-dev gcc pkg-config libvirt-dev

# The signed boot chain for machines that enforce Secure Boot: Debian's shim (signed by Microsoft's UEFI CA)
# and GRUB (signed by Debian), unpacked from their packages without installing them (installing them would
# make this machine's own boot loader theirs). OCTOPROV_SIGNED_BOOT_DIR points at the usr/lib inside.
SIGNED_BOOT_PACKAGES := shim-signed grub-efi-amd64-signed
SIGNED_BOOT_DIR := .cache/signed-boot

# Extra arguments for pytest, e.g. `make test PYTEST_ARGS='-x -k api'`.
PYTEST_ARGS ?=
# `make run HOST=0.0.0.0 PORT=9000`: passed to `octoprov up` only when given on the make command line
# (an exported PORT or HOST in the environment is ignored; octoprov's own defaults apply otherwise).
UP_ARGS := $(if $(filter command line,$(origin HOST)),--host '$(HOST)') \
           $(if $(filter command line,$(origin PORT)),--port '$(PORT)')

# $(call ensure_deb_packages,PACKAGES): apt-get install those of PACKAGES that dpkg does not report as
# installed (as root, else through sudo). Cheap when nothing is missing: one dpkg-query per package.
define ensure_deb_packages
missing=(); \
if ! command -v dpkg-query >/dev/null; then \
  echo "warning: not a Debian system; make sure these (or their equivalents) are installed: $(1)" >&2; \
else \
  for pkg in $(1); do \
    if [ "$$pkg" = python3-venv ] && $(PYTHON) -c 'import ensurepip' 2>/dev/null; then continue; fi; \
    status=$$(dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null || true); \
    [ "$$status" = "install ok installed" ] || missing+=("$$pkg"); \
  done; \
fi; \
if [ $${#missing[@]} -gt 0 ]; then \
  if [ "$$(id -u)" -eq 0 ]; then as_root=(); \
  elif command -v sudo >/dev/null; then as_root=(sudo); \
  else \
    echo "error: missing Debian packages: $${missing[*]}" >&2; \
    echo "error: install them as root: apt-get install --no-install-recommends $${missing[*]}" >&2; \
    exit 1; \
  fi; \
  echo "Installing missing Debian packages: $${missing[*]}"; \
  "$${as_root[@]}" apt-get update; \
  "$${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "$${missing[@]}"; \
fi
endef

.PHONY: help system-packages signed-boot vcsim .venv run test test-fast lint env-example states clean bench bench-packages chaos

help: ## list the targets (default goal)
	@echo "Usage: make TARGET [PYTEST_ARGS='…'] [HOST=… PORT=…]"
	@echo
	@awk -F ':.*## ' '/^[A-Za-z0-9_.-]+:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

system-packages: ## install the Debian packages the project needs, only those missing (apt-get; sudo if not root)
	@$(call ensure_deb_packages,$(VENV_DEB_PACKAGES) $(DEB_PACKAGES))

signed-boot: $(SIGNED_BOOT_DIR)/.unpacked ## unpack Debian's signed shim and GRUB (for Secure Boot network installs) under .cache/

$(SIGNED_BOOT_DIR)/.unpacked:
	rm -rf $(SIGNED_BOOT_DIR).tmp && mkdir -p $(SIGNED_BOOT_DIR).tmp/debs
	cd $(SIGNED_BOOT_DIR).tmp/debs && apt-get download $(SIGNED_BOOT_PACKAGES) 2>&1 | grep -v '^W: Download is performed unsandboxed' || true
	for deb in $(SIGNED_BOOT_DIR).tmp/debs/*.deb; do dpkg-deb -x "$$deb" $(SIGNED_BOOT_DIR).tmp/root; done
	test -f $(SIGNED_BOOT_DIR).tmp/root/usr/lib/shim/shimx64.efi.signed
	test -f $(SIGNED_BOOT_DIR).tmp/root/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed
	rm -rf $(SIGNED_BOOT_DIR) && mv $(SIGNED_BOOT_DIR).tmp/root $(SIGNED_BOOT_DIR) && rm -rf $(SIGNED_BOOT_DIR).tmp
	touch $@

.venv: $(VENV)/.installed ## create .venv with the project and its test extras (redone when setup.cfg/pyproject.toml change)

$(VENV)/.installed: setup.cfg pyproject.toml
	@$(call ensure_deb_packages,$(VENV_DEB_PACKAGES))
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install -e '.[test]'
	touch $@

run: .venv signed-boot ## set up and start the whole stack on http://127.0.0.1:8080 with embedded defaults (HOST=, PORT=)
	$(VENV)/bin/octoprov db upgrade
	OCTOPROV_SIGNED_BOOT_DIR="$${OCTOPROV_SIGNED_BOOT_DIR:-$(CURDIR)/$(SIGNED_BOOT_DIR)/usr/lib}" \
	exec $(VENV)/bin/octoprov up$(if $(strip $(UP_ARGS)), $(strip $(UP_ARGS)))

vcsim: system-packages .venv ## build govmomi's vCenter simulator for the vSphere tests (once; cached under .cache/vcsim/)
	$(VENV)/bin/python -m tests.support.vcsim

test: system-packages .venv signed-boot vcsim ## run linters and the whole test suite (unit, integration, e2e) on real parts
	status=0; \
	$(VENV)/bin/ruff check . || status=$$?; \
	$(VENV)/bin/mypy || status=$$?; \
	$(VENV)/bin/pytest $(PYTEST_ARGS) || status=$$?; \
	exit $$status

test-fast: .venv ## run the unit tests only (no servers, no VMs; under a minute)
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

bench-packages: ## install what only the benchmarks use (wrk, nginx as a reference)
	@$(call ensure_deb_packages,$(BENCH_DEB_PACKAGES))

bench: system-packages .venv bench-packages ## run the benchmarks; each prints ratios against a reference measured in the same run
	$(VENV)/bin/python -m bench.pipeline_latency
	$(VENV)/bin/python -m bench.pipeline_throughput
	$(VENV)/bin/python -m bench.tftp_bench
	$(VENV)/bin/python -m bench.pxe_storm
	$(VENV)/bin/python -m bench.http_files
	$(VENV)/bin/python -m bench.kvm_start

chaos: system-packages .venv ## kill workers, restart Redis, PostgreSQL and the API under load; table of lost tasks (~7 min)
	$(VENV)/bin/python -m bench.chaos --full

lint: .venv ## run ruff and the type checker (mypy)
	status=0; \
	$(VENV)/bin/ruff check . || status=$$?; \
	$(VENV)/bin/mypy || status=$$?; \
	exit $$status

env-example: .venv ## regenerate .env.example from the settings
	$(VENV)/bin/octoprov settings example > .env.example.tmp && mv .env.example.tmp .env.example \
	  || { rm -f .env.example.tmp; exit 1; }

states: .venv ## draw the task state diagram into docs/states.md
	$(VENV)/bin/octoprov states > docs/states.md.tmp && mv docs/states.md.tmp docs/states.md \
	  || { rm -f docs/states.md.tmp; exit 1; }

clean: ## remove .venv, var/ and caches
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis build dist *.egg-info
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
