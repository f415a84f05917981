# kpgen in a container, provisioned by the same ci/provision.sh as `make provision` and CI.
# `make container-test` (podman, no daemon) and `make docker-test` (a Docker engine) build it
# and run the Kbuild build and the unit tests inside it; ci/container.sh says how.
# QEMU runs under TCG, so `make test` (the boot tests too) needs no /dev/kvm in it.
FROM debian:bookworm

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src

# The apt packages (build tools, QEMU, the kernels), from the provisioning script and the
# kernel list alone: editing the code does not run apt again.
COPY ci/provision.sh /src/ci/
COPY gen/kpgen/data/kernels.toml /src/gen/kpgen/data/
RUN KPGEN_NO_PIP=1 KPGEN_NO_SOURCES=1 bash ci/provision.sh && rm -rf /var/lib/apt/lists/*

# The source (.dockerignore keeps out build/ and other output), then the Python package.
# Behind an HTTPS proxy with its own CA, pip needs the build machine's CA bundle:
# ci/container.sh lends it as the build secret `cacert`, which stays out of the image.
COPY . /src
RUN --mount=type=secret,id=cacert \
    if [ -s /run/secrets/cacert ]; then export PIP_CERT=/run/secrets/cacert; fi; \
    KPGEN_NO_APT=1 KPGEN_NO_SOURCES=1 bash ci/provision.sh && rm -rf /root/.cache/pip

CMD ["make", "test"]
