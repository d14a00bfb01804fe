# syntax=docker/dockerfile:1
# Multi-stage build of the nixtla binary. cargo-chef compiles the dependencies
# in their own layer, so a source change rebuilds only the crate itself.

FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin nixtla \
    && install -D -m 0755 target/release/nixtla /out/nixtla

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin nixtla
COPY --from=builder /out/nixtla /usr/local/bin/nixtla
USER 10001:10001
ENV NIXTLA_LISTEN=0.0.0.0:7000 \
    LOG_FORMAT=json
EXPOSE 7000
# The image has no curl: the binary checks its own /healthz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["nixtla", "healthcheck"]
ENTRYPOINT ["nixtla"]
