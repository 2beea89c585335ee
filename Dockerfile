# The vocalized binary on Debian 12, for docker-compose.yml.
FROM rust:1-bookworm AS build
# cmake builds the libopus bundled by the `opus` crate.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only the sources: never ./target (large) or ./data (it may hold a master key).
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY shared shared
COPY media media
COPY control control
COPY bench bench
COPY migrations migrations
RUN cargo build --release --locked --bin vocalized \
    && cp target/release/vocalized /usr/local/bin/vocalized

FROM debian:bookworm-slim
# CA roots for TLS to the voice providers and Twilio.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/vocalized --create-home vocalized
COPY --from=build /usr/local/bin/vocalized /usr/local/bin/vocalized
USER vocalized
ENV VOCALIZED_LISTEN=0.0.0.0:8080 \
    VOCALIZED_DATA_DIR=/var/lib/vocalized
EXPOSE 8080
ENTRYPOINT ["vocalized"]
CMD ["serve"]
