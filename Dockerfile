# syntax=docker/dockerfile:1
# vault-login: a static (musl) binary on an empty base image, for linux/amd64, linux/arm64 and
# linux/arm/v7:
#
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 \
#     --build-arg VERSION=0.1.0 -t ghcr.io/example/vault-login:0.1.0 --push .
#
# Needs BuildKit (cache mounts). The builder stage runs on the build machine's own platform and
# cross-compiles for each target platform with .ci/build-arch.sh (cargo-zigbuild and zig), so no
# compiler runs under emulation.
#
# checkov:skip=CKV_DOCKER_2: FROM scratch has no shell or HTTP client for a HEALTHCHECK; Kubernetes probes GET /healthz and /readyz (VAULT_LOGIN_LISTEN) instead, and Docker HEALTHCHECK is ignored by Kubernetes anyway.

FROM --platform=$BUILDPLATFORM docker.io/library/rust:1-bookworm AS builder
# python3-venv for the pinned zig and cargo-zigbuild wheels build-arch.sh installs. Pinned to
# bookworm's version (hadolint DL3008).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv=3.11.2-1+b1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG TARGETARCH
ARG TARGETVARIANT
# Registry, git checkouts, target/ (with the zig venv) and zig's cache live in BuildKit cache
# mounts, so a source-only change re-compiles vault-login alone; the binary is copied out of the
# cache mount to /out. sharing=locked: the platforms of one multi-platform build take turns in
# target/ rather than racing to set up the zig venv.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,sharing=locked \
    --mount=type=cache,target=/root/.cache,sharing=locked \
    case "${TARGETARCH}/${TARGETVARIANT}" in \
      amd64/*) arch=amd64 triple=x86_64-unknown-linux-musl ;; \
      arm64/*) arch=arm64 triple=aarch64-unknown-linux-musl ;; \
      arm/v7) arch=armv7 triple=armv7-unknown-linux-musleabihf ;; \
      *) echo "unsupported platform ${TARGETARCH}/${TARGETVARIANT}: linux/amd64, linux/arm64 or linux/arm/v7" >&2; exit 1 ;; \
    esac \
 && bash .ci/build-arch.sh "${arch}" \
 && mkdir -p /out \
 && cp "target/${triple}/release/vault-login" /out/vault-login

FROM scratch
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="vault-login" \
      org.opencontainers.image.description="Logs in to HashiCorp Vault with the pod's Kubernetes service-account JWT, writes the Vault token to a file and keeps it renewed" \
      org.opencontainers.image.source="https://github.com/example/vault-login" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
# No CA bundle: the binary trusts the public web PKI roots built into it (webpki-roots), or
# the CA given in VAULT_CACERT / VAULT_CAPATH / VAULT_CACERT_BYTES (README, "Trust").
COPY --from=builder /out/vault-login /vault-login
# The distroless "nonroot" UID/GID; matches runAsUser/runAsGroup in k8s/.
USER 65532:65532
ENTRYPOINT ["/vault-login"]
