# shellcheck shell=bash
# Shared by the dev and release start-scripts (sourced, never run): their output through tee
# to a log file, and supervisord as the script's child in the foreground.

TEE_PID=""
SUPERVISORD_PID=""
SUPERVISORD_STATUS=0
FORWARDED=0

# From here on, everything goes to stdout and to file $1, through tee. The shell stays tee's
# parent to the end (supervisord runs as its child, not exec'd), so on exit it can close its
# output and wait for tee to write the last line: otherwise the container would end with tee
# and lose it.
start_logging() {
	exec > >(tee -a "$1") 2>&1
	TEE_PID=$!
	trap finish_logging EXIT
}

finish_logging() {
	if [[ -n "$TEE_PID" ]]; then
		exec >&- 2>&-
		wait "$TEE_PID" || true
	fi
}

# supervisord with configuration $1 in the foreground as this shell's child, with docker
# stop's SIGTERM (which tini hands to this shell) passed on; an optional command $2 runs in
# the background once supervisord has started. Sets SUPERVISORD_STATUS to its exit status.
supervise() {
	start_supervisord "$@"
	wait_supervisord
}

# supervisord with configuration $1 in the background, and the optional command $2 beside it.
start_supervisord() {
	supervisord --nodaemon --configuration "$1" &
	SUPERVISORD_PID=$!
	if (($# > 1)); then
		"$2" &
	fi
}

# Until supervisord exits, with docker stop's SIGTERM passed on; sets SUPERVISORD_STATUS.
wait_supervisord() {
	trap 'FORWARDED=1; kill -TERM "$SUPERVISORD_PID" 2>/dev/null || true' TERM INT
	while :; do
		FORWARDED=0
		SUPERVISORD_STATUS=0
		wait "$SUPERVISORD_PID" || SUPERVISORD_STATUS=$?
		# A forwarded signal ends `wait` early (128+N): wait on for supervisord's own exit.
		((SUPERVISORD_STATUS > 128 && FORWARDED == 1)) || break
	done
}

