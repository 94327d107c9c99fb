# syntax=docker/dockerfile:1
# The `tiketi` server image: docker build -t tiketi:dev .  (needs BuildKit, the default
# builder since Docker 23). See k8s/README.md for running it on Kubernetes.

# Bookworm, to match the runtime's glibc (distroless cc-debian12). The toolchain must be
# at least what the locked dependencies need (refinery 0.10: Rust 1.92), which is above
# the workspace's declared rust-version.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# HTTPS for the Toss adapter (production Toss needs it); pass an empty value to leave it out.
ARG CARGO_FEATURES=tiketi-payments/tls
# The registry and target/ live in BuildKit cache mounts, so a rebuild after a source
# change recompiles only what changed. The mounts are gone after this step: copy the
# binary out within it.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p tiketi-api --features "${CARGO_FEATURES}" \
    && install -D -m 0755 target/release/tiketi /out/tiketi

# glibc, libgcc and CA certificates, nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/tiketi /usr/local/bin/tiketi
# The configuration layers (default.toml is also built into the binary). On Kubernetes a
# ConfigMap is mounted over this directory.
COPY config/ /etc/tiketi/
ENV TIKETI_CONFIG_DIR=/etc/tiketi \
    TIKETI_ENV=production
EXPOSE 8080
# distroless's `nonroot` user, by number: Kubernetes can only enforce runAsNonRoot
# against a numeric user.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tiketi"]
CMD ["serve"]
