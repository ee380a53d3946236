# syntax=docker/dockerfile:1
# Build: the offline query data in .sqlx/ means no database is needed at build time.
#
#   docker build --target gateway -t wuts .     # the gateway (the default target)
#   docker build --target sandbox -t wuts-sandbox .   # cargo sandbox, no phone needed
FROM rust:1.95-bookworm AS build
WORKDIR /src
ENV SQLX_OFFLINE=true CARGO_TERM_COLOR=never

# Dependencies first, in a layer of their own: only the manifests and the lock file, with empty
# sources, so that a source change rebuilds the workspace's crates and not every dependency.
COPY Cargo.toml Cargo.lock ./
COPY crates/sandbox/Cargo.toml crates/sandbox/
COPY crates/test-db/Cargo.toml crates/test-db/
COPY crates/test-support/Cargo.toml crates/test-support/
COPY crates/wa-store/Cargo.toml crates/wa-store/
COPY tests/wa-sim/Cargo.toml tests/wa-sim/
RUN for crate in . crates/sandbox crates/test-db crates/test-support crates/wa-store tests/wa-sim; do \
      mkdir -p "$crate/src" && touch "$crate/src/lib.rs" && echo 'fn main() {}' > "$crate/src/main.rs"; \
    done \
 && mkdir -p benches/gateway && echo 'fn main() {}' > benches/gateway/main.rs \
 && cargo build --release --locked -p wuts-gateway --bin wuts

# Then the sources. Their files may be older than the stubs' build, so they are touched.
COPY . .
RUN find src crates tests benches migrations -type f -exec touch {} + \
 && cargo build --release --locked -p wuts-gateway --bin wuts

# The sandbox: its own build (the gateway's test feature), on top of the same dependency layer.
FROM build AS sandbox-build
RUN cargo build --release --locked -p wuts-sandbox

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 wuts

FROM runtime AS sandbox
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash curl jq \
 && rm -rf /var/lib/apt/lists/*
COPY --from=sandbox-build /src/target/release/wuts-sandbox /usr/local/bin/wuts-sandbox
USER wuts
EXPOSE 8180 8181 8182
ENTRYPOINT ["wuts-sandbox"]

FROM runtime AS gateway
COPY --from=build /src/target/release/wuts /usr/local/bin/wuts
USER wuts
ENV WUTS_LISTEN=0.0.0.0:8080 \
    WUTS_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["wuts", "healthcheck"]
ENTRYPOINT ["wuts"]
CMD ["serve"]
