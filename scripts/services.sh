#!/usr/bin/env bash
# Local backing services for the cluster mode and the integration tests:
#   ZooKeeper 127.0.0.1:2181, MariaDB 127.0.0.1:3306, NATS 127.0.0.1:4222, s3rver 127.0.0.1:4569.
#
#   scripts/services.sh start    install what is missing (as root), start what is not listening yet
#   scripts/services.sh stop     stop only what this script started (pid files in the state folder)
#   scripts/services.sh status   show each service
#   scripts/services.sh env      print the export lines (eval "$(scripts/services.sh env)")
#
# Anything already listening on a port is reused, never restarted. State (configs, data, logs, pid
# files) lives in ${CRONJOB_SERVICES_DIR:-/tmp/cronjob-services}. Every wait has a deadline.
# Ports can be overridden (CRONJOB_ZK_PORT, CRONJOB_DB_PORT, CRONJOB_NATS_PORT, CRONJOB_S3_PORT), e.g. to
# run a second, private set next to existing servers.
set -euo pipefail

STATE="${CRONJOB_SERVICES_DIR:-/tmp/cronjob-services}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST=127.0.0.1
ZK_PORT="${CRONJOB_ZK_PORT:-2181}"
DB_PORT="${CRONJOB_DB_PORT:-3306}"
NATS_PORT="${CRONJOB_NATS_PORT:-4222}"
S3_PORT="${CRONJOB_S3_PORT:-4569}"
S3_BUCKET=cronjob
ZK_CLASSPATH="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"

log() { printf '%s\n' "services: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# listening PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
listening() {
	timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds or the deadline passes.
wait_for() {
	local seconds="$1" what="$2"
	shift 2
	local deadline=$((SECONDS + seconds))
	until "$@"; do
		if ((SECONDS >= deadline)); then
			log "timed out after ${seconds}s waiting for $what"
			return 1
		fi
		sleep 0.1
	done
}

zk_ruok() {
	local answer
	answer="$(timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$ZK_PORT; printf ruok >&3; cat <&3" 2>/dev/null || true)"
	[[ "$answer" == "imok" ]]
}

http_ok() { # URL: any HTTP answer counts
	curl -s -o /dev/null --max-time 2 "$1"
}

pid_alive() { # NAME: our pid file exists and its process runs
	local f="$STATE/$1.pid"
	[[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

# spawn NAME LOGFILE COMMAND...: start COMMAND detached, record its pid.
spawn() {
	local name="$1" logfile="$2"
	shift 2
	mkdir -p "$STATE"
	# setsid: own session, so the caller's Ctrl-C / process-group kill does not take it down.
	setsid "$@" >>"$logfile" 2>&1 </dev/null &
	echo $! >"$STATE/$name.pid"
	log "$name started (pid $!, log $logfile)"
}

# ---------------------------------------------------------------- install

need_install() {
	[[ -f /usr/share/java/zookeeper.jar ]] || return 0
	command -v java >/dev/null || return 0
	command -v mariadbd >/dev/null || [[ -x /usr/sbin/mariadbd ]] || return 0
	command -v nats-server >/dev/null || [[ -x /usr/sbin/nats-server ]] || return 0
	return 1
}

install_missing() {
	need_install || return 0
	if [[ "$(id -u)" != 0 ]]; then
		log "ZooKeeper, MariaDB or NATS is missing and this is not root: install zookeeper mariadb-server nats-server yourself"
		return 0
	fi
	log "installing zookeeper mariadb-server nats-server (apt-get)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y zookeeper mariadb-server nats-server
}

# ---------------------------------------------------------------- ZooKeeper

start_zookeeper() {
	if listening "$ZK_PORT"; then
		if zk_ruok; then log "zookeeper: reusing the server on $HOST:$ZK_PORT"; else log "zookeeper: something listens on $ZK_PORT (ruok not answered; reusing it)"; fi
		return 0
	fi
	[[ -f /usr/share/java/zookeeper.jar ]] || die "zookeeper is not installed (apt-get install zookeeper)"
	local dir="$STATE/zookeeper"
	mkdir -p "$dir/data"
	cat >"$dir/zoo.cfg" <<EOF
tickTime=500
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$ZK_PORT
clientPortAddress=$HOST
minSessionTimeout=1000
maxSessionTimeout=60000
maxClientCnxns=0
4lw.commands.whitelist=*
admin.enableServer=false
EOF
	spawn zookeeper "$dir/zookeeper.log" java -Xmx512m -cp "$ZK_CLASSPATH" org.apache.zookeeper.server.ZooKeeperServerMain "$dir/zoo.cfg"
	wait_for 30 "zookeeper ruok" zk_ruok || { tail -n 20 "$dir/zookeeper.log" >&2; die "zookeeper did not start"; }
	log "zookeeper: imok on $HOST:$ZK_PORT"
}

# ---------------------------------------------------------------- MariaDB

MARIADB_SOCKET="$STATE/mariadb/mysqld.sock"

# mysql_root ARGS...: run the client as root, over our socket, the system socket, or TCP.
mysql_root() {
	if pid_alive mariadb; then
		# Ours: only ever our own socket (never fall back to a system server while ours starts).
		[[ -S "$MARIADB_SOCKET" ]] || return 1
		mariadb --no-defaults -uroot --socket="$MARIADB_SOCKET" "$@"
	elif mariadb -uroot -e "SELECT 1" >/dev/null 2>&1; then
		mariadb -uroot "$@"
	else
		mariadb -uroot --protocol=TCP -h"$HOST" -P"$DB_PORT" "$@"
	fi
}

mariadb_answers() { mysql_root -e "SELECT 1" >/dev/null 2>&1; }

ensure_database() {
	mysql_root <<'SQL'
CREATE DATABASE IF NOT EXISTS `cronjob`;
CREATE USER IF NOT EXISTS 'cronjob'@'localhost' IDENTIFIED BY 'cronjob';
CREATE USER IF NOT EXISTS 'cronjob'@'127.0.0.1' IDENTIFIED BY 'cronjob';
CREATE USER IF NOT EXISTS 'cronjob'@'%' IDENTIFIED BY 'cronjob';
ALTER USER 'cronjob'@'localhost' IDENTIFIED BY 'cronjob';
ALTER USER 'cronjob'@'127.0.0.1' IDENTIFIED BY 'cronjob';
ALTER USER 'cronjob'@'%' IDENTIFIED BY 'cronjob';
GRANT ALL PRIVILEGES ON `cronjob`.* TO 'cronjob'@'localhost', 'cronjob'@'127.0.0.1', 'cronjob'@'%';
GRANT ALL PRIVILEGES ON `cronjob_test%`.* TO 'cronjob'@'localhost', 'cronjob'@'127.0.0.1', 'cronjob'@'%';
FLUSH PRIVILEGES;
SQL
	log "mariadb: database cronjob and user cronjob/cronjob ready (all on cronjob.* and cronjob_test%.*)"
}

start_mariadb() {
	if listening "$DB_PORT"; then
		log "mariadb: reusing the server on $HOST:$DB_PORT"
		ensure_database || die "cannot log in as root to the running MariaDB (tried the Unix socket and TCP); create the cronjob database/user yourself"
		return 0
	fi
	command -v mariadbd >/dev/null || [[ -x /usr/sbin/mariadbd ]] || die "mariadb-server is not installed"
	local mariadbd_bin
	mariadbd_bin="$(command -v mariadbd || echo /usr/sbin/mariadbd)"
	local dir="$STATE/mariadb"
	mkdir -p "$dir"
	local user_args=()
	if [[ "$(id -u)" == 0 ]]; then user_args=(--user=root); fi
	if [[ ! -d "$dir/data/mysql" ]]; then
		log "mariadb: initialising $dir/data (mariadb-install-db)"
		mariadb-install-db --no-defaults --datadir="$dir/data" "${user_args[@]}" \
			--auth-root-authentication-method=socket --skip-test-db >"$dir/install.log" 2>&1 ||
			{ tail -n 20 "$dir/install.log" >&2; die "mariadb-install-db failed"; }
	fi
	spawn mariadb "$dir/mariadb.log" "$mariadbd_bin" --no-defaults --datadir="$dir/data" "${user_args[@]}" \
		--bind-address="$HOST" --port="$DB_PORT" --socket="$MARIADB_SOCKET" --pid-file="$dir/mariadbd.pid" \
		--log-error="$dir/error.log"
	wait_for 60 "mariadb" mariadb_answers || { tail -n 20 "$dir/error.log" >&2 || true; die "mariadb did not start"; }
	ensure_database
}

# ---------------------------------------------------------------- NATS

start_nats() {
	if listening "$NATS_PORT"; then
		log "nats: reusing the server on $HOST:$NATS_PORT"
		return 0
	fi
	local bin
	bin="$(command -v nats-server || echo /usr/sbin/nats-server)"
	[[ -x "$bin" ]] || die "nats-server is not installed"
	spawn nats "$STATE/nats.log" "$bin" -a "$HOST" -p "$NATS_PORT"
	wait_for 20 "nats" listening "$NATS_PORT" || { tail -n 20 "$STATE/nats.log" >&2; die "nats did not start"; }
	log "nats: listening on $HOST:$NATS_PORT"
}

# ---------------------------------------------------------------- s3rver

s3_bucket_ready() {
	local code
	code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$HOST:$S3_PORT/$S3_BUCKET" || true)"
	[[ "$code" == 200 ]]
}

start_s3() {
	if listening "$S3_PORT"; then
		log "s3: reusing the server on $HOST:$S3_PORT"
		if ! s3_bucket_ready; then
			# s3rver accepts unsigned requests; create the bucket (409 when it exists).
			curl -s -o /dev/null --max-time 5 -X PUT "http://$HOST:$S3_PORT/$S3_BUCKET" || true
			s3_bucket_ready || log "s3: bucket $S3_BUCKET not reachable on the existing server"
		fi
		return 0
	fi
	local bin="$REPO/node_modules/.bin/s3rver"
	[[ -x "$bin" ]] || die "s3rver is missing: run npm ci in $REPO"
	mkdir -p "$STATE/s3"
	spawn s3 "$STATE/s3rver.log" "$bin" --address "$HOST" --port "$S3_PORT" --directory "$STATE/s3" \
		--configure-bucket "$S3_BUCKET" --silent
	wait_for 30 "s3rver bucket $S3_BUCKET" s3_bucket_ready || { tail -n 20 "$STATE/s3rver.log" >&2; die "s3rver did not start"; }
	log "s3: bucket $S3_BUCKET on http://$HOST:$S3_PORT"
}

# ---------------------------------------------------------------- commands

cmd_start() {
	mkdir -p "$STATE"
	install_missing
	start_zookeeper
	start_mariadb
	start_nats
	start_s3
	log "all services are up (state in $STATE)"
}

stop_one() {
	local name="$1" f="$STATE/$1.pid" pid
	[[ -f "$f" ]] || return 0
	pid="$(cat "$f")"
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		if ! wait_for 30 "$name to stop" bash -c "! kill -0 $pid 2>/dev/null"; then
			log "$name: still running, sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		log "$name stopped (pid $pid)"
	fi
	rm -f "$f"
}

cmd_stop() {
	local name
	for name in s3 nats mariadb zookeeper; do stop_one "$name"; done
}

status_one() { # NAME PORT EXTRA
	local name="$1" port="$2" extra="${3:-}" who
	if pid_alive "$name"; then who="started here (pid $(cat "$STATE/$name.pid"))"; else who="not started by this script"; fi
	if listening "$port"; then
		printf '%-10s up    %s:%-5s %s%s\n' "$name" "$HOST" "$port" "$who" "$extra"
	else
		printf '%-10s down  %s:%-5s %s\n' "$name" "$HOST" "$port" "$who"
	fi
}

cmd_status() {
	local zk=""
	if zk_ruok; then zk=", ruok=imok"; fi
	status_one zookeeper "$ZK_PORT" "$zk"
	status_one mariadb "$DB_PORT"
	status_one nats "$NATS_PORT"
	local s3=""
	if s3_bucket_ready; then s3=", bucket $S3_BUCKET ok"; fi
	status_one s3 "$S3_PORT" "$s3"
}

cmd_env() {
	cat <<EOF
export DATABASE_URL=mysql://cronjob:cronjob@$HOST:$DB_PORT/cronjob
export ZOOKEEPER=$HOST:$ZK_PORT
export TRANSPORTER=nats://$HOST:$NATS_PORT
export S3_ENDPOINT=http://$HOST:$S3_PORT
export S3_BUCKET=$S3_BUCKET
export AWS_ACCESS_KEY_ID=S3RVER
export AWS_SECRET_ACCESS_KEY=S3RVER
export AWS_REGION=us-east-1
EOF
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
*)
	echo "usage: $0 {start|stop|status|env}" >&2
	exit 2
	;;
esac
