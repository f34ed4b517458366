# shellcheck shell=bash
# The functions both boot stages use. launch_ec2 renders this file into stage 1
# (deploy/aws/user-data.sh) and push_config into stage 2 (deploy/aws/webserver.sh),
# in place of their boot_functions marker: each stage runs as one file on the instance.
# Each stage sets LOG_TAG, the name its log lines carry, before this.

# A stamped line to stderr (the console and the boot log).
log() {
	printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$LOG_TAG" "$*" >&2
}

# Stop with one line. With FAILURE_FILE set (stage 2's status report), the line goes there
# too: this may run in a command substitution's subshell.
die() {
	log "error: $*"
	if [[ -v FAILURE_FILE && -n $FAILURE_FILE ]]; then
		printf '%s\n' "$*" >"$FAILURE_FILE" || true
	fi
	exit 1
}

# The ERR trap's line: which command failed, where.
on_error() {
	log "error: line $2: '$3' failed with exit status $1"
}

# The AWS CLI, pointed at AWS_ENDPOINT_URL when it is set: CLI releases before 2.13 (e.g.
# Debian 12's) ignore that variable.
aws_cli() {
	aws ${AWS_ENDPOINT_URL:+--endpoint-url "$AWS_ENDPOINT_URL"} "$@"
}
