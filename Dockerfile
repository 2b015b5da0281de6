# syntax=docker/dockerfile:1
# Multi-stage build: dependencies are compiled in their own layer (cached
# until Cargo.toml/Cargo.lock change), the runtime image holds only the
# binary, CA certificates and a non-root user.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, against a stub crate, so source edits reuse this layer.
COPY Cargo.toml Cargo.lock ./
# Build settings (a C define for the allocator) before anything is compiled.
COPY .cargo ./.cargo
# (Cargo.toml names bench targets: their files must exist for cargo to load.)
RUN mkdir src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > benches/crypto.rs && echo 'fn main() {}' > benches/objects.rs && echo 'fn main() {}' > benches/codec.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/deps/custodian* target/release/deps/libcustodian* target/release/custodian*
COPY src ./src
COPY migrations ./migrations
# The admin API serves its OpenAPI document from the binary (include_str!).
COPY docs ./docs
RUN cargo build --release --locked --bin custodian

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home custodian \
    && install -d -o custodian -m 0700 /keys
COPY --from=build /src/target/release/custodian /usr/local/bin/custodian
COPY config/custodian.toml /etc/custodian/custodian.toml
USER custodian
WORKDIR /data
# /data holds the SQLite default, the fine-tune file copies and the record
# spool: mount a volume there (or point files.location at S3) so copies, and
# records spooled while the store was down, outlive the container. With
# [encryption] on, the data keys go to /keys: a volume of its own, never
# backed up with /data (or set encryption.key_store_url).
ENV CUSTODIAN_CONFIG=/etc/custodian/custodian.toml \
    CUSTODIAN__SERVER__LISTEN=0.0.0.0:8080 \
    CUSTODIAN__DATABASE__URL=sqlite:///data/custodian.db \
    CUSTODIAN__FILES__LOCATION=/data/files \
    CUSTODIAN__SPOOL__DIR=/data/spool \
    CUSTODIAN__ENCRYPTION__KEY_DIR=/keys
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=4s --retries=3 CMD ["custodian", "healthcheck"]
ENTRYPOINT ["custodian"]
CMD ["serve"]
