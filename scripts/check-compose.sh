#!/usr/bin/env bash
# Validate docker-compose.yml without a Docker engine:
#   1. `docker-compose config -q` (Debian's docker-compose 1.29; installed with apt-get when root and missing)
#   2. every expected service is defined (`docker-compose config --services`)
#   3. CRONJOB_ADMIN_TOKEN and CRONJOB_SECRET_KEY are really required (config must fail without either)
# Exits non-zero on any problem.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FILE="${COMPOSE_FILE_TO_CHECK:-$REPO/docker-compose.yml}"
EXPECTED=(mysql zookeeper minio minio-init nats api1 api2 haproxy manager1 manager2 worker1 worker2 worker3)

log() { printf '%s\n' "check-compose: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -f "$FILE" ]] || die "$FILE not found"
[[ -f "$REPO/deploy/haproxy.cfg" ]] || die "deploy/haproxy.cfg not found (mounted by the haproxy service)"
[[ -f "$REPO/Dockerfile" ]] || die "Dockerfile not found (built by the cronjob services)"

if ! command -v docker-compose >/dev/null; then
	[[ "$(id -u)" == 0 ]] || die "docker-compose is missing: apt-get install docker-compose (as root)"
	export DEBIAN_FRONTEND=noninteractive
	log "installing docker-compose (apt-get)"
	if ! apt-get install -y --no-install-recommends docker-compose; then
		apt-get update
		apt-get install -y --no-install-recommends docker-compose
	fi
fi
log "$(docker-compose version --short 2>/dev/null || docker-compose version | head -n 1)"

# The file demands CRONJOB_ADMIN_TOKEN and CRONJOB_SECRET_KEY (${...:?}); validate with dummy ones when unset.
export CRONJOB_ADMIN_TOKEN="${CRONJOB_ADMIN_TOKEN:-check-compose-dummy-token}"
export CRONJOB_SECRET_KEY="${CRONJOB_SECRET_KEY:-abababababababababababababababababababababababababababababababab}"
compose() { docker-compose -f "$FILE" --project-directory "$REPO" "$@"; }

compose config -q || die "docker-compose config rejected $FILE"
log "config -q: ok"

services="$(compose config --services)" || die "docker-compose config --services failed"
missing=()
for s in "${EXPECTED[@]}"; do
	grep -qx -- "$s" <<<"$services" || missing+=("$s")
done
((${#missing[@]} == 0)) || die "missing services: ${missing[*]} (found: $(tr '\n' ' ' <<<"$services"))"
log "services: ok ($(tr '\n' ' ' <<<"$services"))"

# Every cronjob node must get the admin token and a NODE_ID of its own.
resolved="$(compose config)" || die "docker-compose config failed"
for s in api1 api2 manager1 manager2 worker1 worker2 worker3; do
	block="$(awk -v s="  $s:" '$0 == s {on = 1; next} on && /^  [^ ]/ {exit} on' <<<"$resolved")"
	grep -q "NODE_ID: $s\$" <<<"$block" || die "service $s: NODE_ID is not $s"
	grep -q "CRONJOB_ADMIN_TOKEN: $CRONJOB_ADMIN_TOKEN\$" <<<"$block" || die "service $s: CRONJOB_ADMIN_TOKEN not passed"
	grep -q "CRONJOB_SECRET_KEY: $CRONJOB_SECRET_KEY\$" <<<"$block" || die "service $s: CRONJOB_SECRET_KEY not passed"
done
log "NODE_ID, CRONJOB_ADMIN_TOKEN and CRONJOB_SECRET_KEY per node: ok"

# Without the token, the file must refuse to resolve.
if env -u CRONJOB_ADMIN_TOKEN docker-compose -f "$FILE" --project-directory "$REPO" config -q >/dev/null 2>&1; then
	die "config succeeded without CRONJOB_ADMIN_TOKEN: it must be required"
fi
log "CRONJOB_ADMIN_TOKEN required: ok"
if env -u CRONJOB_SECRET_KEY docker-compose -f "$FILE" --project-directory "$REPO" config -q >/dev/null 2>&1; then
	die "config succeeded without CRONJOB_SECRET_KEY: it must be required"
fi
log "CRONJOB_SECRET_KEY required: ok"
log "all checks passed"
