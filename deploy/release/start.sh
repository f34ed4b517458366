#!/usr/bin/env bash
# Bootstrap stage 3: the release image's CMD. Checks the environment, then fetches the
# config, waits for the database, migrates and collects static files while supervisord
# starts gunicorn, which imports the app meanwhile and serves only once those steps are done.
# Any failure stops it with one line and a non-zero exit.
#
# Environment:
#   DJANGO_CONFIG_URI     required: s3://BUCKET/KEY, file:///PATH or /PATH of the settings file
#   DJANGO_MIGRATE=1      0: do not migrate (for instances that must not change the schema)
#   DJANGO_COLLECTSTATIC=1  0: do not collect static files
#   DB_WAIT_TIMEOUT       seconds to wait for the database to answer a query (project.env's)
#   PORT                  port gunicorn binds, all interfaces (the image's: project.env's APP_PORT)
#   GUNICORN_SOCKET       a Unix socket gunicorn binds instead of PORT (stage 2 sets it)
#   GUNICORN_WORKERS      worker processes (default 2 x CPUs, the --cpus quota counted)
#   GUNICORN_THREADS=4    threads per worker
#   GUNICORN_ACCESS_LOG=$HOST_LOG_DIR/access.log  gunicorn's access log file; - for stdout, off
#   DJANGO_DATA_DIR=/host/data  SQLite and local files, if the config uses them
# Output goes to stdout and to $HOST_LOG_DIR/container.log (the image sets it: /host/logs); the access log to its own file. A program supervisord can't start
# (FATAL) stops the container with a non-zero exit.
set -Eeuo pipefail

readonly APP_DIR=/var/www
# shellcheck source=/dev/null # start_logging, start_supervisord, wait_supervisord, ...
source "$(dirname "${BASH_SOURCE[0]}")/../lib/supervised.sh"
readonly LOG_DIR="$HOST_LOG_DIR"
readonly SUPERVISORD_CONF="$APP_DIR/deploy/release/supervisord.conf"
# deploy/release/exit_on_fatal.py writes the name of a program gone FATAL here.
export SUPERVISORD_FATAL_FILE=/tmp/supervisord-fatal
# gunicorn.conf.py binds the port only once this file exists: after the start-up steps.
export GUNICORN_START_GATE=/tmp/gunicorn-start-gate

die() {
	echo "start.sh: error: $*" >&2
	exit 1
}

log() {
	echo "start.sh: $*"
}

# Fail unless variable $1 is 0 or 1.
check_flag() {
	local name="$1"
	[[ "${!name}" == 0 || "${!name}" == 1 ]] || die "$name=${!name}: set it to 1 or 0"
}

# Fail unless variable $1 is an integer in [$2, $3].
check_int() {
	local name="$1" min="$2" max="$3"
	if [[ ! "${!name}" =~ ^[0-9]{1,9}$ ]] || ((10#${!name} < min || 10#${!name} > max)); then
		die "$name=${!name}: set it to a whole number from $min to $max"
	fi
}

# Every variable, before anything else runs.
check_environment() {
	if [[ -z "${DJANGO_CONFIG_URI:-}" ]]; then
		die "DJANGO_CONFIG_URI is not set: set it to the settings file, e.g. s3://BUCKET/config/ENV.py"
	fi
	case "$DJANGO_CONFIG_URI" in
	s3://?*/?* | file:///?* | /?*) ;;
	*) die "DJANGO_CONFIG_URI=$DJANGO_CONFIG_URI: set it to s3://BUCKET/KEY, file:///PATH or /PATH" ;;
	esac
	: "${DJANGO_MIGRATE:=1}" "${DJANGO_COLLECTSTATIC:=1}" "${PORT:=}"
	: "${DB_WAIT_TIMEOUT:=$(project_value DB_WAIT_TIMEOUT)}"
	check_flag DJANGO_MIGRATE
	check_flag DJANGO_COLLECTSTATIC
	check_int DB_WAIT_TIMEOUT 1 86400
	check_int PORT 1 65535
	export DB_WAIT_TIMEOUT
	if [[ -n "${GUNICORN_WORKERS:-}" ]]; then
		check_int GUNICORN_WORKERS 1 1000
	fi
	if [[ -n "${GUNICORN_THREADS:-}" ]]; then
		check_int GUNICORN_THREADS 1 1000
	fi
	case "${GUNICORN_ACCESS_LOG:-}" in
	"" | - | off | /?*) ;;
	*) die "GUNICORN_ACCESS_LOG=$GUNICORN_ACCESS_LOG: set it to an absolute file path, - (stdout) or off" ;;
	esac
	export PORT
}

# project.env's value of $1, without letting project.env touch our environment.
project_value() {
	(
		# shellcheck source=/dev/null # project.env: plain KEY=value lines
		source "$APP_DIR/project.env"
		echo "${!1}"
	)
}

# The directories of /host this start writes: logs, and the data directory, if any.
prepare_host_dirs() {
	local dir
	for dir in "$LOG_DIR" ${DJANGO_DATA_DIR:+"$DJANGO_DATA_DIR"}; do
		if ! mkdir -p "$dir" 2>/dev/null || [[ ! -w "$dir" ]]; then
			die "$dir is not writable by uid $(id -u): on the host, chown $(id -u) $(project_value CONTAINERS_ROOT)/$(project_value PROJECT_NAME) (mounted at /host)"
		fi
	done
}

# supervisord starts its programs ~1 s sooner once its control socket is connected to
# (deploy/release/wake_supervisord.py says why); harmless if it never connects.
wake_supervisord() {
	python3 "$APP_DIR/deploy/release/wake_supervisord.py" "$SUPERVISOR_SOCKET" || true
}

# supervisord (deploy/lib/supervised.sh) in the background, so that gunicorn's master
# imports the app while the start-up steps run; it binds its port only once the start-up
# process has created the gate file after its last step (gunicorn.conf.py's on_starting). The
# gate is closed first: a restarted container keeps its /tmp.
start_gunicorn_behind_gate() {
	rm -f "$SUPERVISORD_FATAL_FILE" "$GUNICORN_START_GATE"
	start_supervisord "$SUPERVISORD_CONF" wake_supervisord
}

# Until supervisord exits; exits with its status, or with one line when it stopped because
# a program could not be started.
wait_for_supervisord() {
	wait_supervisord
	if [[ -s "$SUPERVISORD_FATAL_FILE" ]]; then
		die "$(<"$SUPERVISORD_FATAL_FILE") could not be started (supervisord gave up: FATAL; its own error is above): stopping the container"
	fi
	exit "$SUPERVISORD_STATUS"
}

# Every process of this start reads the config from one local copy (DJANGO_CONFIG_CACHE),
# fetched by the first that needs it; deleting the copy here means a restarted container
# fetches the config afresh.
reset_config_cache() {
	export DJANGO_CONFIG_CACHE="${DJANGO_CONFIG_CACHE:-/tmp/django-config/settings.py}"
	rm -f "$DJANGO_CONFIG_CACHE"
	log "config from $DJANGO_CONFIG_URI; waiting up to ${DB_WAIT_TIMEOUT}s (DB_WAIT_TIMEOUT) for the database"
}

# wait_for_db, migrate_with_lock and collectstatic_once in one Python process: the
# interpreter, Django's set-up and the config fetch are paid once, not once per step. It
# opens gunicorn's gate itself after the last step, before its own (slow) interpreter exit.
run_startup_steps() {
	local flags=(--no-input --ready-file "$GUNICORN_START_GATE")
	if [[ "$DJANGO_MIGRATE" == 0 ]]; then
		log "DJANGO_MIGRATE=0: not migrating"
		flags+=(--no-migrate)
	fi
	if [[ "$DJANGO_COLLECTSTATIC" == 0 ]]; then
		log "DJANGO_COLLECTSTATIC=0: not collecting static files"
		flags+=(--no-collectstatic)
	fi
	python3 "$APP_DIR/manage.py" start_steps "${flags[@]}"
}

# supervisord killed, not stopped: a clean stop would print its lines after the steps' error,
# which must stay the last. gunicorn, waiting at the gate, and exit_on_fatal exit quietly when
# supervisord is gone; the script's tee then sees the end of their output.
kill_supervisord() {
	kill -KILL "$SUPERVISORD_PID" 2>/dev/null || true
	wait "$SUPERVISORD_PID" 2>/dev/null || true
}

# The start-up steps; on failure (their error is above), gunicorn and supervisord stopped
# before the script exits with the steps' status: no half-started container.
run_startup_steps_or_stop() {
	local status=0
	run_startup_steps || status=$?
	if ((status != 0)); then
		kill_supervisord
		exit "$status"
	fi
}

main() {
	check_environment
	prepare_host_dirs
	start_logging "$LOG_DIR/container.log"
	log "starting $(date -u +%Y-%m-%dT%H:%M:%SZ) as uid $(id -u)"
	reset_config_cache
	log "starting supervisord (gunicorn on ${GUNICORN_SOCKET:-port $PORT} once the start-up steps are done)"
	start_gunicorn_behind_gate
	run_startup_steps_or_stop
	wait_for_supervisord
}

if ! (return 0 2>/dev/null); then
	main "$@"
fi
