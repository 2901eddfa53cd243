# The one image for the broker and the operator: `brook broker`, `brook operator`.
#   docker build -t brook:dev .
#   kind load docker-image brook:dev && E2E_IMAGE=brook:dev make e2e
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin brook

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/brook /usr/local/bin/brook
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/brook"]
CMD ["broker"]
