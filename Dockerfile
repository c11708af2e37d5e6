# syntax=docker/dockerfile:1
# vault-login: a static (musl) binary on an empty base image.
#
#   docker buildx build --build-arg VERSION=0.1.0 -t ghcr.io/example/vault-login:0.1.0 .
#
# Needs BuildKit (cache mounts). Builds linux/amd64 only (x86_64-unknown-linux-musl).
#
# checkov:skip=CKV_DOCKER_2: FROM scratch has no shell or HTTP client for a HEALTHCHECK; Kubernetes probes GET /healthz and /readyz (VAULT_LOGIN_LISTEN) instead, and Docker HEALTHCHECK is ignored by Kubernetes anyway.

ARG RUST_TARGET=x86_64-unknown-linux-musl

FROM docker.io/library/rust:1-bookworm AS builder
ARG RUST_TARGET
# musl-gcc for ring's C/asm parts. Pinned to bookworm's version (hadolint DL3008).
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${RUST_TARGET}"
WORKDIR /src
COPY . .
# Registry, git checkouts and target/ live in BuildKit cache mounts, so a source-only change
# re-compiles vault-login alone; the binary is copied out of the cache mount to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "${RUST_TARGET}" --bin vault-login \
 && mkdir -p /out \
 && cp "target/${RUST_TARGET}/release/vault-login" /out/vault-login

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
