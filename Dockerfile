# kpgen in a container: the same provisioning script as `make provision` and CI.
# QEMU runs under TCG inside the container, so no /dev/kvm is needed:
#   docker build -t kpgen . && docker run --rm kpgen make test
FROM debian:bookworm

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . /src
RUN bash ci/provision.sh && rm -rf /var/lib/apt/lists/*

CMD ["make", "test"]
