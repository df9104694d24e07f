#!/usr/bin/env bash
# The docker-compose topology as local processes on one machine:
#   2 API nodes (SERVICES=api,jobs; ports 30000 and 30001), 2 managers (SERVICES=manager), 3 workers
#   (SERVICES=worker, each with its own data folder), on ZooKeeper, MariaDB, NATS and s3rver from
#   scripts/services.sh.
#
#   scripts/cluster.sh start     start the backing services (scripts/services.sh start), build dist/ if
#                                missing, start every node not running yet, wait until both API ports
#                                answer 200 on /health
#   scripts/cluster.sh stop      stop the nodes this script started (not the backing services:
#                                scripts/services.sh stop does that)
#   scripts/cluster.sh status    each node, and the API's /health (exit 1 when a node is not running)
#   scripts/cluster.sh token     print the admin bearer token
#
# State (logs, pid files, data folders, the admin token) lives in ${CRONJOB_CLUSTER_DIR:-/tmp/cronjob-cluster}.
# The admin token is CRONJOB_ADMIN_TOKEN when set, else one generated at the first start and kept in
# <state>/admin-token (0600). Variables already set in the caller's environment (DATABASE_URL,
# ZOOKEEPER, ZOOKEEPER_ROOT, TRANSPORTER, NAMESPACE, S3_*, LOG_LEVEL, ...) win over the defaults of
# scripts/services.sh env. Other knobs: CRONJOB_CLUSTER_PORT (first API port, default 30000; the
# second is +1), CRONJOB_CLUSTER_METRICS_PORT (when set, node i gets METRICS_PORT=base+i),
# CRONJOB_CLUSTER_TIMEOUT (seconds to wait for /health, default 120).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${CRONJOB_CLUSTER_DIR:-/tmp/cronjob-cluster}"
API_PORT="${CRONJOB_CLUSTER_PORT:-30000}"
TIMEOUT="${CRONJOB_CLUSTER_TIMEOUT:-120}"
ENTRY="$REPO/dist/bin/cronjob.js"

# name SERVICES PORT (PORT only means something for the API nodes)
NODES=(
	"api1 api,jobs $API_PORT"
	"api2 api,jobs $((API_PORT + 1))"
	"manager1 manager -"
	"manager2 manager -"
	"worker1 worker -"
	"worker2 worker -"
	"worker3 worker -"
)
API_PORTS=("$API_PORT" "$((API_PORT + 1))")

log() { printf '%s\n' "cluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pid_alive() { # NAME
	local f="$STATE/$1.pid"
	[[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

health_code() { # PORT -> HTTP status of GET /health (000 when nothing answers)
	curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$1/health" || true
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds or the deadline passes.
wait_for() {
	local seconds="$1" what="$2"
	shift 2
	local deadline=$((SECONDS + seconds)) rc
	while :; do
		rc=0
		"$@" || rc=$?
		((rc == 0)) && return 0
		((rc == 2)) && return 1 # the command says waiting longer is pointless
		if ((SECONDS >= deadline)); then
			log "timed out after ${seconds}s waiting for $what"
			return 1
		fi
		sleep 0.5
	done
}

# Export scripts/services.sh env, keeping whatever the caller already set.
load_env() {
	local line kv key
	while IFS= read -r line; do
		[[ "$line" == export\ * ]] || continue
		kv="${line#export }"
		key="${kv%%=*}"
		if [[ -z "${!key:-}" ]]; then eval "$line"; fi
	done < <(bash "$REPO/scripts/services.sh" env)
}

# A secret the nodes share: the value of the variable NAME when set, else the one kept in
# <state>/FILE, else BYTES new random bytes (hex). Whichever it is, it is (re)written to
# <state>/FILE (0600) and printed.
kept_secret() { # NAME FILE BYTES WHAT
	local f="$STATE/$2" value
	mkdir -p "$STATE"
	if [[ -n "${!1:-}" ]]; then
		value="${!1}"
	elif [[ -s "$f" ]]; then
		value="$(cat "$f")"
	else
		value="$(node -e "process.stdout.write(require('crypto').randomBytes($3).toString('hex'))")"
		log "generated $4 (kept in $f)"
	fi
	(umask 077 && printf '%s\n' "$value" >"$f")
	chmod 600 "$f"
	printf '%s' "$value"
}

# The admin token the nodes get, and the key that seals jobs' secretEnv (the same on every node).
admin_token() { kept_secret CRONJOB_ADMIN_TOKEN admin-token 24 "an admin token"; }
secret_key() { kept_secret CRONJOB_SECRET_KEY secret-key 32 "a secret key"; }

# A node died while we waited: show why and stop.
check_alive() { # NAME
	pid_alive "$1" && return 0
	log "$1 exited; last lines of $STATE/$1.log:"
	tail -n 30 "$STATE/$1.log" >&2 || true
	return 1
}

start_node() { # NAME SERVICES PORT INDEX
	local name="$1" services="$2" port="$3" index="$4"
	if pid_alive "$name"; then
		log "$name already running (pid $(cat "$STATE/$name.pid"))"
		return 0
	fi
	local data="$STATE/data/$name"
	mkdir -p "$data"
	local extra=()
	[[ "$port" != - ]] && extra+=("PORT=$port")
	[[ -n "${CRONJOB_CLUSTER_METRICS_PORT:-}" ]] && extra+=("METRICS_PORT=$((CRONJOB_CLUSTER_METRICS_PORT + index))")
	# setsid: own session, so the caller's Ctrl-C does not take the node down; pid = process group.
	setsid env NODE_ID="$name" SERVICES="$services" CRONJOB_DATA_DIR="$data" "${extra[@]}" \
		node "$ENTRY" >>"$STATE/$name.log" 2>&1 </dev/null &
	echo $! >"$STATE/$name.pid"
	log "$name started (pid $!, SERVICES=$services${extra[*]:+ ${extra[*]}}, log $STATE/$name.log)"
}

api_answers() { # PORT NAME: any HTTP answer on /health, while NAME is alive
	check_alive "$2" || return 2
	[[ "$(health_code "$1")" != 000 ]]
}

api_healthy() { # PORT: 200 on /health while every node is alive
	local entry name
	for entry in "${NODES[@]}"; do
		read -r name _ _ <<<"$entry"
		check_alive "$name" || return 2
	done
	[[ "$(health_code "$1")" == 200 ]]
}

cmd_start() {
	mkdir -p "$STATE/data"
	bash "$REPO/scripts/services.sh" start
	load_env
	export CRONJOB_ADMIN_TOKEN
	CRONJOB_ADMIN_TOKEN="$(admin_token)"
	export CRONJOB_SECRET_KEY
	CRONJOB_SECRET_KEY="$(secret_key)"
	if [[ ! -f "$ENTRY" ]]; then
		log "building dist/ (tsc)"
		(cd "$REPO" && npx tsc -p tsconfig.json) || die "build failed"
	fi
	local port
	for port in "${API_PORTS[@]}"; do
		if [[ "$(health_code "$port")" != 000 ]] && ! pid_alive api1 && ! pid_alive api2; then
			die "port $port is already in use by another process (set CRONJOB_CLUSTER_PORT)"
		fi
	done
	log "backends: ZOOKEEPER=$ZOOKEEPER TRANSPORTER=$TRANSPORTER DATABASE_URL=${DATABASE_URL%%://*}://... S3_ENDPOINT=${S3_ENDPOINT:-none}"

	# The API nodes own the tables: start api1, wait until it answers, then the rest.
	local i=0 entry name services nport
	for entry in "${NODES[@]}"; do
		read -r name services nport <<<"$entry"
		start_node "$name" "$services" "$nport" "$i"
		if [[ "$name" == api1 ]]; then
			wait_for "$TIMEOUT" "api1 to answer on port $nport" api_answers "$nport" api1 || die "api1 did not come up (log: $STATE/api1.log)"
		fi
		i=$((i + 1))
	done
	for port in "${API_PORTS[@]}"; do
		if ! wait_for "$TIMEOUT" "200 on http://127.0.0.1:$port/health" api_healthy "$port"; then
			log "last /health answer on $port: $(curl -s --max-time 3 "http://127.0.0.1:$port/health" || true)"
			die "the cluster is not healthy (logs in $STATE)"
		fi
	done
	log "cluster up: API on http://127.0.0.1:${API_PORTS[0]} and :${API_PORTS[1]}; token: scripts/cluster.sh token"
}

cmd_stop() {
	local entry name pid f
	# Workers first (they finish or hand back their runs), then managers, then the API.
	for ((i = ${#NODES[@]} - 1; i >= 0; i--)); do
		read -r name _ _ <<<"${NODES[$i]}"
		f="$STATE/$name.pid"
		[[ -f "$f" ]] || continue
		pid="$(cat "$f")"
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			if ! wait_for 20 "$name to stop" bash -c "! kill -0 $pid 2>/dev/null"; then
				log "$name: still running, sending SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
			fi
			log "$name stopped (pid $pid)"
		fi
		rm -f "$f"
	done
}

cmd_status() {
	local entry name services port state rc=0
	for entry in "${NODES[@]}"; do
		read -r name services port <<<"$entry"
		if pid_alive "$name"; then state="running (pid $(cat "$STATE/$name.pid"))"; else state="stopped"; rc=1; fi
		if [[ "$port" != - ]]; then state="$state, :$port /health $(health_code "$port")"; fi
		printf '%-9s %-8s %s\n' "$name" "$services" "$state"
	done
	if pid_alive api1; then
		printf 'health: %s\n' "$(curl -s --max-time 3 "http://127.0.0.1:${API_PORTS[0]}/health" || true)"
	fi
	return $rc
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
token)
	[[ -s "$STATE/admin-token" ]] || die "no token yet: run $0 start (or set CRONJOB_ADMIN_TOKEN)"
	cat "$STATE/admin-token"
	;;
*)
	echo "usage: $0 {start|stop|status|token}" >&2
	exit 2
	;;
esac
