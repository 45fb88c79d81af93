# orgx-peer fleet image: the peer daemon plus the coding-agent CLIs it drives.
#
#   docker build -t orgx-peer .
#
# Stage 1 builds the `orgx-peer` binary on bookworm, the Debian release of the runtime stage,
# so its glibc matches (its build script compiles the built-in WebAssembly guests for
# wasm32-wasip2 and embeds them). Stage 2 is a slim Node runtime with the three CLIs from npm
# at the versions the test suite pins in tests/node/package.json.
# See docs/deploy.md.

FROM rust:1-bookworm AS builder

# Build with the toolchain the image ships. Without this, rust-toolchain.toml
# (channel "stable") would make rustup download a second copy of stable.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION}
RUN rustup target add wasm32-wasip2

WORKDIR /src
COPY . .
# The cache mounts keep the crates and incremental state between builds (BuildKit); the
# binary is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p orgx-peer \
    && install -D -m 0755 target/release/orgx-peer /out/orgx-peer


FROM node:20-bookworm-slim

LABEL org.opencontainers.image.title="orgx-peer" \
      org.opencontainers.image.description="OrgX peer: runs OrgX coding tasks on Claude Code, Codex and opencode" \
      org.opencontainers.image.licenses="Apache-2.0"

# git: the agents work in git checkouts; ca-certificates: the CLIs' HTTPS to their model APIs.
# Versions come from the bookworm suite of the pinned base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git \
    && rm -rf /var/lib/apt/lists/*

# The CLIs, pinned (keep in step with tests/node/package.json). Install scripts stay on:
# the postinstalls of claude-code and opencode-ai copy the platform's native binary (shipped
# in an npm optional dependency, so optional dependencies must not be omitted) into place.
# Nothing else is downloaded. (claude-code declares node >=22 but runs as a native binary;
# the test suite runs this same version on node 20.)
RUN npm install -g --omit=dev --ignore-scripts=false --no-audit --no-fund --loglevel=error \
        @anthropic-ai/claude-code@2.1.330 \
        @openai/codex@0.171.0 \
        opencode-ai@1.18.33 \
    && npm cache clean --force \
    && claude --version && codex --version && opencode --version

# A fixed non-root user; numeric in USER so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --gid 10001 orgx \
    && useradd --uid 10001 --gid 10001 --home-dir /home/orgx --create-home --shell /bin/bash orgx \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/orgx-peer

COPY --from=builder /out/orgx-peer /usr/local/bin/orgx-peer

# ORGX_PEER_DATA_DIR: outbox, rules cache, dedupe keys, components, status.sock.
# The agents must not replace themselves inside a running image: their auto-updaters are off.
ENV ORGX_PEER_DATA_DIR=/var/lib/orgx-peer \
    HOME=/home/orgx \
    DISABLE_AUTOUPDATER=1 \
    OPENCODE_DISABLE_AUTOUPDATE=1

USER 10001:10001
WORKDIR /home/orgx
VOLUME ["/var/lib/orgx-peer"]

# The peer stops cleanly on SIGTERM: in-flight runs get SIGTERM, then SIGKILL after 3 s,
# and owed messages stay in the outbox on the volume. Give `docker stop` more than that
# (its default of 10 s is enough; Kubernetes uses terminationGracePeriodSeconds: 30).
STOPSIGNAL SIGTERM

# `orgx-peer status --json` asks the daemon over status.sock in the data dir and exits
# non-zero when nothing answers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["orgx-peer", "status", "--json"]

ENTRYPOINT ["orgx-peer"]
CMD ["start"]
