# syntax=docker/dockerfile:1
# distributed-cronjob node image. One image for every role: SERVICES= picks what a container runs
# (api,jobs | manager | worker; default all of them in one process). See README "Running a cluster".
#
#   docker build -t distributed-cronjob .
#   docker run --rm -e CRONJOB_ADMIN_TOKEN=... -p 30000:30000 distributed-cronjob   # embedded default

# ---------------------------------------------------------------- build
FROM node:20-bookworm-slim AS build
# sqlite3 is compiled from source against the system libsqlite3 (.npmrc: build-from-source=true, sqlite=/usr).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ libsqlite3-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
# Only the application sources: tests and benchmarks are not part of the image.
COPY tsconfig.json moleculer.config.ts ./
COPY bin ./bin
COPY lib ./lib
COPY mixins ./mixins
COPY services ./services
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# ---------------------------------------------------------------- runtime
FROM node:20-bookworm-slim
# libsqlite3-0: the sqlite3 addon links against it (embedded default / SQLite mode).
# tini is PID 1: it forwards signals to node and reaps orphaned zombies. The worker runs jobs in their
# own process groups; grandchildren a job leaves behind are re-parented to PID 1 and must be reaped
# there (node as PID 1 would not reap them).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsqlite3-0 tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# Data folder (SQLite files in the embedded default, executable cache, run folders). Owned by the
# unprivileged `node` account so api/manager containers may run with `user: node`.
RUN mkdir -p /var/lib/cronjob && chown node:node /var/lib/cronjob
ENV NODE_ENV=production \
    CRONJOB_DATA_DIR=/var/lib/cronjob
# The default user stays root ON PURPOSE: a worker runs each job as its `runAs` account (or
# CRONJOB_RUN_USER=nobody) by setuid/setgid on the child, which only root can do. As a non-root user
# every job would run as that user and `runAs` could not be honoured. Nodes that run no worker
# (SERVICES=api,jobs or manager) need no privilege: run them with `--user node` / compose `user: node`.
EXPOSE 30000
ENTRYPOINT ["tini", "--"]
CMD ["node", "dist/bin/cronjob.js"]
