# syntax=docker/dockerfile:1
# keygate container image.
#   docker build -t keygate .
#   docker run -p 8080:8080 -p 127.0.0.1:9090:9090 \
#     -v "$PWD/config/gateway.yaml:/etc/keygate/gateway.yaml:ro" keygate

ARG NODE_IMAGE=node:24-slim

# ---- build: full install, compile, then drop devDependencies ---------------
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Manifests first so the dependency layer is cached until they change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime: compiled JS + production node_modules only --------------------
FROM ${NODE_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="keygate" \
      org.opencontainers.image.description="Authenticating reverse-proxy gateway: hashed API keys, plans, exact rate limits, Prometheus metrics." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/node:24-slim"

# KEYGATE_ADMIN_HOST: the admin listener (healthz/readyz/metrics) defaults to
# 127.0.0.1, unreachable by probes and Prometheus from outside the container.
# KEYGATE_DATA_DIR: the default config's embedded store lives under it; its
# fallback (.keygate, relative to /app) is not writable by the runtime user.
# KEYGATE_CONFIG: used by `keygate serve` when --config is not given.
ENV NODE_ENV=production \
    KEYGATE_ADMIN_HOST=0.0.0.0 \
    KEYGATE_DATA_DIR=/var/lib/keygate \
    KEYGATE_CONFIG=/etc/keygate/gateway.yaml

WORKDIR /app
# Application files stay owned by root: the process can read, not modify, them.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY config ./config
# The default config, so the image runs without a mount; mount a file over it.
COPY config/gateway.yaml /etc/keygate/gateway.yaml

# Writable data dir for the embedded key store. No VOLUME instruction (it would
# create an anonymous volume on every run); mount a volume here to keep data.
RUN mkdir -p /var/lib/keygate \
 && chown 1000:1000 /var/lib/keygate \
 && chmod 0750 /var/lib/keygate

# The image's `node` user, numerically, so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000

EXPOSE 8080 9090

# slim has no curl: ask node. 127.0.0.1 reaches the admin listener whether it
# binds 0.0.0.0 or 127.0.0.1; the port follows KEYGATE_ADMIN_PORT like the
# default config does. (Plain HTTP: adjust if the admin listener gets TLS.)
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.KEYGATE_ADMIN_PORT||9090)+'/healthz',{signal:AbortSignal.timeout(3000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# SIGTERM drains in-flight requests (server.shutdown_grace_ms, default 10 s) and
# exits 0; give the runtime a longer stop timeout than that (e.g. --stop-timeout 30).
STOPSIGNAL SIGTERM

# node runs as PID 1: fine, keygate handles SIGTERM/SIGINT/SIGHUP itself and
# spawns no children to reap.
# A young generation of 32 MB semi-spaces instead of V8's 16: at thousands of requests per
# second the default scavenges so often that in-flight requests get promoted, and with a
# large key cache the gateway spends a quarter of its time in GC (README, Performance).
ENTRYPOINT ["node", "--max-semi-space-size=32", "/app/dist/cli/main.js"]
CMD ["serve", "--config", "/etc/keygate/gateway.yaml"]
