# syntax=docker/dockerfile:1
# switchyard: a multi-stage build. The dependencies are compiled in a layer of their own
# (cargo-chef), so a source change rebuilds only the workspace crates; the runtime image is
# distroless (glibc, CA certificates, no shell, no curl) and runs as a non-root user.
#
#   docker build -t switchyard --build-arg GIT_COMMIT="$(git rev-parse --short=12 HEAD)" .
#   docker run --rm -p 8080:8080 switchyard
#
# See docs/deploy.md for the config, the state volume, the health check and draining.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG RUST_VERSION
# Use the image's toolchain rather than installing the one rust-toolchain.toml names.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION} \
    CARGO_TERM_COLOR=never
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# 1. Dependencies only: this layer is reused until Cargo.toml or Cargo.lock change.
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --package switchyard
# 2. The workspace itself.
COPY . .
ARG GIT_COMMIT=unknown
ENV SWITCHYARD_GIT_COMMIT=${GIT_COMMIT}
RUN cargo build --release --locked --package switchyard --bin switchyard \
    && mkdir -p /out/etc/switchyard /out/var/lib/switchyard \
    && cp target/release/switchyard /out/switchyard \
    && sh deploy/docker/container-config.sh gateway.toml > /out/etc/switchyard/gateway.toml \
    && /out/switchyard check --config /out/etc/switchyard/gateway.toml

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="switchyard" \
      org.opencontainers.image.description="A reverse-proxy gateway for LLM agent services" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/switchyard /usr/local/bin/switchyard
COPY --from=builder /out/etc/switchyard/gateway.toml /etc/switchyard/gateway.toml
# Kill switches, rollout stages, incidents and the audit log: mount a volume here.
COPY --from=builder --chown=65532:65532 /out/var/lib/switchyard /var/lib/switchyard
USER 65532:65532
WORKDIR /var/lib/switchyard
VOLUME ["/var/lib/switchyard"]
# 8080: traffic. 9090: admin API and /metrics (plain HTTP: publish it on private networks only).
EXPOSE 8080 9090
# SIGTERM stops accepting and lets open requests and streams finish (docs/deploy.md, draining):
# give `docker stop` a timeout above the drain time, e.g. `docker stop -t 40`.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/switchyard", "healthcheck", "--url", "http://127.0.0.1:8080/health"]
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["serve", "--config", "/etc/switchyard/gateway.toml", "--log-format", "json"]
