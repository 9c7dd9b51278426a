# syntax=docker/dockerfile:1
#
# One image with every hybrid-tenancy binary. docker-compose.yml runs each service from it with
# its own command (tenant-subgraph, fact-subgraph, org-subgraph, todo-subgraph, gateway);
# without a command it runs the launcher, all services in one process.
#
#   docker build -t hybrid-tenancy .
#
# The build stage compiles the workspace in release with the locked dependencies. The runtime
# stage is the slim Debian of the same release, because the binaries link its glibc and zlib;
# it holds the binaries, curl for the health checks, and an unprivileged user.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build

# rdkafka builds its bundled librdkafka with make and gcc, which the image has, against the
# system zlib found through pkg-config.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*

# Only what the workspace is built from, so a local target/, data/ or .env never enters the
# build. Cargo reads every member's manifest and every declared target (benches too).
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY migration migration
COPY subgraphs subgraphs
COPY gateway gateway

# The cache mounts keep the crate registry and compiled dependencies between builds. The target
# directory is not part of the image, so the binaries are copied out in the same step.
ARG BINARIES="hybrid-tenancy tenant-subgraph fact-subgraph org-subgraph todo-subgraph gateway"
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eu; \
    selection=""; \
    for binary in $BINARIES; do selection="$selection --bin $binary"; done; \
    cargo build --release --locked --workspace $selection; \
    mkdir /out; \
    for binary in $BINARIES; do cp "target/release/$binary" /out/; done

FROM debian:${DEBIAN_RELEASE}-slim

# A fixed uid, so volumes and a runAsNonRoot policy see the same user everywhere. Its home holds
# the signing key directory: a named volume mounted there starts with this ownership.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 hybrid-tenancy \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/hybrid-tenancy \
        --shell /usr/sbin/nologin hybrid-tenancy \
    && mkdir -p /var/lib/hybrid-tenancy/keys /var/lib/hybrid-tenancy/data \
    && chown -R 10001:10001 /var/lib/hybrid-tenancy

COPY --from=build /out/ /usr/local/bin/

USER 10001:10001
WORKDIR /var/lib/hybrid-tenancy
# Only used in embedded mode (no DATABASE_URL): the launcher's SQLite files and event log.
ENV DATA_DIR=/var/lib/hybrid-tenancy/data
# gateway, tenant, fact, org, todo
EXPOSE 4000 4001 4002 4003 4004
CMD ["hybrid-tenancy"]
