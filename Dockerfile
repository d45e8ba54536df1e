# syntax=docker/dockerfile:1
# One image for every keyturn command: `docker run keyturn worker`, `serve`, `apply -f /keysets.yaml`,
# `status default`, ... docker-compose.yml picks the command per service.

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Install scripts are skipped: this image's npm 10 does not read package.json's allowScripts, and
# the build needs none of them (tsc, then webpack and swc's prebuilt binary for the workflow bundle).
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only, without the optional ones: those are embedded PostgreSQL's server
# binaries (a container is given DATABASE_URL) and swc's compiler (only bundling needs it, and the
# bundle is prebuilt); their install scripts would only check for those binaries. The Temporal core
# bridge ships prebuilt libraries for five platforms; only this machine's is kept.
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund \
  && npm cache clean --force \
  && find node_modules/@temporalio/core-bridge/releases -mindepth 1 -maxdepth 1 \
       ! -name "$(uname -m)-unknown-linux-gnu" -exec rm -rf {} +
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY keysets.yaml ./
# The base image's unprivileged user: keyturn writes nothing to disk when DATABASE_URL and
# KEYTURN_KEK are set, only JSON logs to stdout.
USER node
# The JWKS server (PORT), the worker's /metrics, the Temporal SDK's metrics.
EXPOSE 8080 9464 9465
ENTRYPOINT ["node", "bin/keyturn.js"]
CMD ["worker"]
