# syntax=docker/dockerfile:1
#
# gdprd container image.
#   docker build -t gdprd .
#   docker run --rm -p 127.0.0.1:8080:8080 -e DATABASE_URL=postgres://... gdprd
# `gdprd serve` (the default command) applies the migrations at start.
# compose.yaml runs it together with PostgreSQL.

FROM rust:1.95-bookworm AS builder
WORKDIR /build

# Dependencies first: build the locked dependency graph against stub sources,
# so that this layer is reused until Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src target/release/.fingerprint/gdprd-*

# The application. The migrations are embedded at compile time
# (sqlx::migrate!). Removing the stub's fingerprints above makes cargo rebuild
# the crate even when the copied files are older than the stub.
COPY src/ src/
COPY migrations/ migrations/
RUN cargo build --release --locked

FROM debian:bookworm-slim

# curl is for the HEALTHCHECK.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gdprd \
 && useradd --system --uid 10001 --gid gdprd --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin gdprd

WORKDIR /app
COPY --from=builder /build/target/release/gdprd /usr/local/bin/gdprd
# Default data-service catalog.
COPY catalog/ /app/catalog/

# The gdprd user, numerically so that "runs as non-root" can be verified
# without the image's /etc/passwd (e.g. Kubernetes runAsNonRoot).
USER 10001:10001
ENV GDPRD_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["gdprd"]
CMD ["serve"]
