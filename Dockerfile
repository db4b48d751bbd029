# syntax=docker/dockerfile:1
# The kubepim operator image: docker build -t REGISTRY/kubepim:0.1.0 . && docker push REGISTRY/kubepim:0.1.0
#
# Where no registry is reachable (no base image can be pulled), scripts/build-image.sh builds the
# same image from a static binary without a base image or a daemon.

# --- builder: a static binary (rustls, no OpenSSL; crt-static links glibc statically) ---------
FROM docker.io/library/rust:1.89-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    RUSTFLAGS='-C target-feature=+crt-static' \
      cargo build --locked --release --target x86_64-unknown-linux-gnu --bin kubepim \
 && install -D -m 0755 target/x86_64-unknown-linux-gnu/release/kubepim /out/kubepim

# --- final: distroless/static (CA certificates, /etc/passwd with nonroot 65532, no shell) -----
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kubepim" \
      org.opencontainers.image.description="Privileged Identity Management for Kubernetes: eligible, approved, time-limited RBAC bindings" \
      org.opencontainers.image.source="https://github.com/kubepim/kubepim" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/kubepim /kubepim
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["/kubepim"]
CMD ["run"]
