#!/usr/bin/env bash
# What `./manage.py remote` runs on an instance through Systems Manager Run Command (document
# AWS-RunShellScript, as root): one manage.py command inside the serving release container,
# its output and exit status being the command's. `remote` renders the container's name into
# this script and sends it whole with the arguments, so the instance needs nothing beyond what
# the boot stages set up (the Systems Manager agent ships with the default Ubuntu AMI).
#
# Usage: remote.sh [-e NAME=VALUE]... -- MANAGE_PY_ARGUMENT...
#   -e NAME=VALUE   a variable for the command (docker exec -e), e.g. DJANGO_SUPERUSER_USERNAME
#
# Settings, optional; production sets none:
#   CONTAINER_NAME  the container's name (default: the rendered one, as in stage 2)
set -Eeuo pipefail

# Filled in by ./manage.py remote from project.env.
RENDERED_CONTAINER='{{container}}'

log() {
	printf 'remote: %s\n' "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

# The serving container's name, once it is known to be running.
serving_container() {
	local name=${CONTAINER_NAME:-$RENDERED_CONTAINER} state
	command -v docker >/dev/null || die "no docker on this instance: see /var/log/bootstrap.log"
	if ! state=$(docker container inspect --format '{{.State.Status}}' "$name" 2>/dev/null); then
		die "no container $name on this instance: see /var/log/bootstrap.log"
	fi
	[[ $state == running ]] || die "container $name is $state, not running: see /var/log/bootstrap.log"
	printf '%s\n' "$name"
}

main() {
	local name
	local -a variables=()
	while [[ $# -gt 0 && $1 != -- ]]; do
		[[ $1 == -e && $# -ge 2 ]] || die "usage: remote.sh [-e NAME=VALUE]... -- ARGUMENT..."
		variables+=(-e "$2")
		shift 2
	done
	[[ ${1:-} != -- ]] || shift
	[[ $# -gt 0 ]] || die "no manage.py command given"
	name=$(serving_container)
	exec docker exec "${variables[@]}" "$name" python3 manage.py "$@"
}

if ! (return 0 2>/dev/null); then
	main "$@"
fi
