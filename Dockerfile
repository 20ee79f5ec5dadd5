# syntax=docker/dockerfile:1
# One image for every Octoprov role; docker/entrypoint.sh picks the role from the command:
#   api | worker --queues POOL | beat | pxe | flower | db upgrade | samba
# Build: docker build -t octoprov:local .   (compose.yaml builds it; docs/operations.md)
# Runs as the unprivileged user octoprov (UID 10001); pxe (UDP ports 67, 69, 4011) and samba (smbd switches
# users) are the two roles that need root, which compose.yaml grants them, with pxe's capabilities cut down.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# PIP_CERT: a CA bundle for a build behind a TLS-inspecting proxy, mounted into the build
# (podman build --volume BUNDLE:/run/build-ca.crt:ro --build-arg PIP_CERT=/run/build-ca.crt); unset, pip
# trusts its own bundle. http_proxy and https_proxy are build arguments of their own in every engine.
ARG PIP_CERT
# libvirt-python is published as source only and compiles against libvirt-dev.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc pkg-config libvirt-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/octoprov
# The dependencies first, in a layer of their own: a code change does not download and compile them again.
COPY setup.cfg pyproject.toml ./
RUN python -m venv .venv \
 && .venv/bin/pip install --no-cache-dir ${PIP_CERT:+--cert "$PIP_CERT"} --upgrade pip \
 && .venv/bin/python -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); \
print(c['options']['install_requires'])" > requirements.txt \
 && .venv/bin/pip install --no-cache-dir ${PIP_CERT:+--cert "$PIP_CERT"} -r requirements.txt
COPY README.md ./
COPY octoprov ./octoprov
COPY api ./api
COPY workers ./workers
COPY cli ./cli
COPY ipxe ./ipxe
# Editable: the code finds its templates beside it (ipxe/, answers/), as in a checkout.
RUN .venv/bin/pip install --no-cache-dir --no-deps -e . \
 && find . -name __pycache__ -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
# ipxe: the iPXE binaries TFTP hands out (/usr/lib/ipxe); wimtools: wimlib, which reads WIM editions;
# libvirt0 and openssh-client: libvirt's client library and the ssh it runs for qemu+ssh:// hosts;
# samba: smbd for the samba role (the WinPE file share); isolinux, syslinux-common and mtools: the BIOS boot
# loader and the EFI image of virtual-media boot ISOs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ipxe wimtools libvirt0 openssh-client samba isolinux syslinux-common \
    mtools \
 && rm -rf /var/lib/apt/lists/*
ARG UID=10001
ARG GID=10001
RUN groupadd --system --gid "${GID}" octoprov \
 && useradd --system --uid "${UID}" --gid octoprov --home-dir /var/lib/octoprov --shell /usr/sbin/nologin octoprov \
 && install -d -o octoprov -g octoprov /var/lib/octoprov /images /drivers
COPY --from=build /opt/octoprov /opt/octoprov
# The spec's layout: /answers holds the answer-file templates and the scripts library; compose mounts ./answers
# over it, so templates are edited without a rebuild. The code looks for them beside itself.
COPY answers /answers
RUN ln -s /answers /opt/octoprov/answers
COPY docker/entrypoint.sh /usr/local/bin/octoprov-entrypoint
ENV PATH=/opt/octoprov/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OCTOPROV_DATA_DIR=/var/lib/octoprov \
    OCTOPROV_IMAGES_DIR=/images \
    OCTOPROV_DRIVERS_DIR=/drivers \
    OCTOPROV_API_HOST=0.0.0.0
# What the image is, for registries and `docker image inspect`: VERSION is setup.cfg's (a test keeps them
# equal), REVISION the commit and SOURCE the repository it was built from, given at build time:
#   docker compose build --build-arg REVISION=$(git rev-parse HEAD) --build-arg SOURCE=$(git remote get-url origin)
# After the packages: a build argument invalidates the cache of the RUN steps after it, so an upgrade to another
# revision rebuilds only what follows. The RUN is what makes the labels follow the arguments too (buildah reuses
# a cached LABEL step whatever the arguments' values); it also leaves the build's identity in the image.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=""
RUN printf 'version=%s\nrevision=%s\nsource=%s\n' "${VERSION}" "${REVISION}" "${SOURCE}" > /opt/octoprov/BUILD
LABEL org.opencontainers.image.title="Octoprov" \
      org.opencontainers.image.description="Zero-touch OS provisioning for Hyper-V, KVM and bare metal" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
USER octoprov
WORKDIR /var/lib/octoprov
EXPOSE 8080 5555
ENTRYPOINT ["/usr/local/bin/octoprov-entrypoint"]
CMD ["api"]
