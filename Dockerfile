# syntax=docker/dockerfile:1
#
# One image for every wdt-pipeline binary: ingest, transform, deliver, console, wdtpipe (CLI) and
# wdt-sandbox (WDT simulator). Kubernetes picks the binary with `command:`.
#
#   docker build -t wdt-pipeline:0.1.0 .
#   docker run --rm wdt-pipeline:0.1.0 deliver --help
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts below.

# ---- build ------------------------------------------------------------------------------
# Only the Rust toolchain (1.88+) is needed: protoc is vendored through Cargo.
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The registry, git checkouts and target/ live in BuildKit cache mounts, so a rebuild after
# a source change recompiles only the workspace crates, not every dependency. Cache mounts
# are not part of the image, hence the copy to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        --bin ingest --bin transform --bin deliver --bin console --bin wdtpipe --bin wdt-sandbox \
 && mkdir -p /out \
 && for bin in ingest transform deliver console wdtpipe wdt-sandbox; do \
        cp "target/release/$bin" /out/; \
    done

# ---- run --------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 wdtpipe \
 && useradd --system --uid 10001 --gid wdtpipe --home-dir /var/lib/wdtpipe \
        --no-create-home --shell /usr/sbin/nologin wdtpipe \
 && mkdir -p /var/lib/wdtpipe \
 && chown wdtpipe:wdtpipe /var/lib/wdtpipe
COPY --from=builder /out/ /usr/local/bin/
# deliver keeps its outbox in DATA_DIR/outbox; mount a persistent volume here.
WORKDIR /var/lib/wdtpipe
# Numeric, so Kubernetes can check runAsNonRoot.
USER 10001:10001
# ingest HTTP, ingest/transform/deliver gRPC, transform/deliver metrics, sandbox HTTP.
EXPOSE 8080 50051 50052 50053 9102 9103 8090
CMD ["wdtpipe", "--help"]
