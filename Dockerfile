# Build: the offline query data in .sqlx/ means no database is needed at build time.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked -p wuts-gateway --bin wuts

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 wuts
COPY --from=build /src/target/release/wuts /usr/local/bin/wuts
USER wuts
ENV WUTS_LISTEN=0.0.0.0:8080 \
    WUTS_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["wuts"]
CMD ["serve"]
