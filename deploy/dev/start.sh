#!/usr/bin/env bash
# The dev image's CMD. As root: prepare /host, initialise Postgres in /host/postgres/data
# when that is empty (like docker-library's postgres entrypoint), then hand over to
# supervisord, which runs Postgres as `postgres` and `start.sh django` as `app`: wait for the
# database, migrate, and Django's autoreloading server on 0.0.0.0:$PORT.
#
# Environment: PORT (the image's: project.env's APP_PORT), DJANGO_CONFIG_URI
# (deploy/dev/config.py in the image).
# Output goes to stdout and to $HOST_LOG_DIR/container.log (the image sets it: /host/logs).
set -Eeuo pipefail

readonly APP_DIR=/var/www
# shellcheck source=/dev/null # start_logging, finish_logging, supervise
source "$(dirname "${BASH_SOURCE[0]}")/../lib/supervised.sh"
readonly PGDATA=/host/postgres/data
readonly PG_SOCKET_DIR=/run/postgresql
readonly LOG_DIR="$HOST_LOG_DIR"

die() {
	echo "start.sh: error: $*" >&2
	exit 1
}

log() {
	echo "start.sh: $*"
}

# The newest PostgreSQL server installed in the image.
pg_bin() {
	local found
	found="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' | sort -V | tail -n 1)"
	[[ -n "$found" ]] || die "no PostgreSQL server in the image"
	dirname "$found"
}

as_postgres() {
	runuser -u postgres -- "$@"
}

# Host directories and their owners; Postgres insists on owning its data directory alone.
prepare_host() {
	mkdir -p "$PGDATA" "$LOG_DIR" /host/media "$PG_SOCKET_DIR"
	# postgres and app must pass through /host to reach their directories (search only).
	chmod a+x /host /host/postgres
	chown postgres:postgres /host/postgres "$PGDATA" "$PG_SOCKET_DIR"
	chmod 0700 "$PGDATA"
	chmod 2775 "$PG_SOCKET_DIR"
	chown app:app "$LOG_DIR" /host/media
}

# initdb and create the app's role and database, only when the data directory is empty.
# All of it happens in a directory beside $PGDATA that is renamed into place at the end: a
# start that dies halfway leaves $PGDATA empty, and the next start begins again.
init_postgres_if_empty() {
	local bin="$1"
	if [[ -s "$PGDATA/PG_VERSION" ]]; then
		local version
		version="$(<"$PGDATA/PG_VERSION")"
		[[ "$bin" == "/usr/lib/postgresql/$version/bin" ]] \
			|| die "$PGDATA holds PostgreSQL $version data but the image runs $bin: upgrade it (pg_upgrade) or move it away"
		log "PostgreSQL data in $PGDATA (version $version) kept"
		return
	fi
	if [[ -n "$(ls -A "$PGDATA")" ]]; then
		die "$PGDATA is not empty but holds no PostgreSQL data: empty it, or mount another host directory at /host"
	fi
	local partial="$PGDATA.partial"
	log "initialising PostgreSQL in $PGDATA"
	rm -rf "$partial"
	install -d -o postgres -g postgres -m 0700 "$partial"
	# Only processes inside this container reach the socket; Postgres listens on no TCP port.
	as_postgres "$bin/initdb" -D "$partial" --username=postgres --encoding=UTF8 \
		--auth-local=trust --auth-host=scram-sha-256 >/dev/null
	as_postgres "$bin/pg_ctl" -D "$partial" -w -l /dev/null \
		-o "-c listen_addresses= -c unix_socket_directories=$PG_SOCKET_DIR" start >/dev/null
	as_postgres "$bin/psql" -h "$PG_SOCKET_DIR" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
		-c "CREATE ROLE app LOGIN CREATEDB" -c "CREATE DATABASE app OWNER app"
	as_postgres "$bin/pg_ctl" -D "$partial" -w -m fast stop >/dev/null
	# rename(2) replaces the empty $PGDATA in one step.
	mv -T "$partial" "$PGDATA"
}

# Run by supervisord as `app`: the database first, then migrate, then runserver.
run_django() {
	cd "$APP_DIR"
	python3 manage.py wait_for_db
	python3 manage.py migrate --no-input
	exec python3 manage.py runserver "0.0.0.0:$PORT"
}

main() {
	if [[ "${1:-}" == django ]]; then
		run_django
	fi
	[[ "$(id -u)" -eq 0 ]] || die "run the dev image as root (its default user): start.sh prepares /host, then drops privileges"
	[[ "${PORT:-}" =~ ^[0-9]{1,5}$ ]] || die "PORT=$PORT: set it to a port number"
	prepare_host
	start_logging "$LOG_DIR/container.log"
	local bin
	bin="$(pg_bin)"
	init_postgres_if_empty "$bin"
	export PG_BIN="$bin"
	supervise "$APP_DIR/deploy/dev/supervisord.conf"
	exit "$SUPERVISORD_STATUS"
}

if ! (return 0 2>/dev/null); then
	main "$@"
fi
