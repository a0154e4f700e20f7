# Estafette's container image, no BuildKit-only syntax. Stages:
#
#   base      the runtime base with the shipped config, user, volume, command
#   prebuilt  packages binaries built on the host (dist/estafette and
#             dist/estafette-load, see scripts/docker-cluster); what CI runs:
#               docker build --target prebuilt --build-arg RUNTIME_IMAGE=... .
#   build     compiles them in a Debian 12 image with Rust and libclang
#             (RocksDB's bindings); for operators without a Rust toolchain
#   runtime   (the default target) the build stage's binaries on the runtime base
#
# RUNTIME_IMAGE must hold libc, libgcc, libstdc++ and CA certificates, an
# `estafette` user (uid 10001) and /var/lib/estafette owned by it:
# scripts/image-base makes one from Debian's packages (no shell in it).
# The legacy builder runs every stage before the target, so `base` and
# `prebuilt` come first: building `prebuilt` never compiles anything.

ARG RUNTIME_IMAGE=estafette-runtime-base:bookworm
ARG BUILD_IMAGE=rust:1.95-bookworm

# What every image stage shares: the runtime base, the shipped config, the
# user, the volume, the ports and the command.
FROM ${RUNTIME_IMAGE} AS base
COPY k8s/base/estafette.toml /etc/estafette/estafette.toml
USER 10001:10001
WORKDIR /var/lib/estafette
VOLUME ["/var/lib/estafette"]
# SMTP (STARTTLS), SMTPS, admin HTTP, replication (QUIC).
EXPOSE 2525 4465 9090 7946/udp
ENTRYPOINT ["/usr/local/bin/estafette"]
CMD ["serve", "--config", "/etc/estafette/estafette.toml", "--json"]

FROM base AS prebuilt
COPY dist/estafette dist/estafette-load /usr/local/bin/

FROM ${BUILD_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libclang-dev clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p estafette-relay -p estafette-loadtest \
 && mkdir -p /out \
 && cp target/release/estafette target/release/estafette-load /out/ \
 && strip /out/estafette /out/estafette-load

FROM base AS runtime
COPY --from=build /out/estafette /out/estafette-load /usr/local/bin/
