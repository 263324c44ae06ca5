# isa-gateway in a container: build with cargo, run from distroless (no shell, no package manager),
# as the non-root user nonroot (uid and gid 65532). See docs/deploy/README.md.
#
#   docker build -t isa-gateway .
#
# The image holds the binary, the message schemas (/etc/isa-gateway/schemas), the example
# production configuration (/etc/isa-gateway/gateway.toml, docs/deploy/gateway.production.toml)
# and the agreement templates (/etc/isa-gateway/agreements). It expects mounted:
#   /etc/isa-gateway                        read-only: your gateway.toml, agreements/, schemas/,
#                                           tls/ (server certificate, client CA, CRLs), partners/, auth/
#   /run/credentials/isa-gateway.service    read-only: the secrets (server.key, destination keys and
#                                           passwords, and keys/ as `isa-gateway keys new` writes it),
#                                           readable by uid 65532; the configuration names them here
#   /var/lib/isa-gateway                    read-write volume: the SQLite ledger, drop folders and
#                                           subject-index/ (the subject-index seeds, which retention
#                                           rewrites: `docker run … keys new --subject` makes them)
# Migrations are built into the binary; with PostgreSQL nothing more is needed on disk.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole workspace (see .dockerignore): the policy crate, migrations and schemas/envelope.json are
# compiled in, and Cargo wants the test and bench targets Cargo.toml names to exist.
COPY . .
RUN cargo build --release --locked --bin isa-gateway \
 && install -D -m 0755 target/release/isa-gateway /out/usr/local/bin/isa-gateway \
 && install -d -m 0700 /out/var/lib/isa-gateway

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/isa-gateway /usr/local/bin/isa-gateway
# The state folder (0700), owned by nonroot so that a new named volume mounted on it is too.
COPY --from=build --chown=65532:65532 /out/var/lib/ /var/lib/
COPY schemas /etc/isa-gateway/schemas
COPY isa-templates /etc/isa-gateway/agreements
COPY docs/deploy/gateway.production.toml /etc/isa-gateway/gateway.toml

# Every subcommand finds the configuration (`docker run IMAGE check`, `… ledger verify`).
ENV ISA_GATEWAY_CONFIG=/etc/isa-gateway/gateway.toml
# Keys come from the mounted secrets, laid out as `isa-gateway keys new` writes them (under systemd
# they come as credentials instead; see docs/deploy/isa-gateway.service).
ENV ISA_GATEWAY__KEYS_DIR=/run/credentials/isa-gateway.service/keys
# The subject-index seeds: the gateway rewrites them when retention destroys a year, so they live
# on the read-write volume, not with the read-only secrets.
ENV ISA_GATEWAY_SUBJECT_INDEX_DIR=/var/lib/isa-gateway/subject-index

USER nonroot
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/isa-gateway"]
CMD ["serve", "--config", "/etc/isa-gateway/gateway.toml"]
