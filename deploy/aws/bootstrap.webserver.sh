#!/usr/bin/env bash
# Stage 2 of a web server's boot: run this environment's release image as the project's one
# container, then wait until it answers /health.
#
# Stage 1 (deploy/aws/user-data.sh) downloads this script from s3://<bucket>/deploy/webserver.sh
# and runs it as root. `./manage.py push_config` renders the environment's facts into it (the
# block below) from project.env, their one owner, and uploads it. Running it again replaces the
# container with one from the release currently recorded at s3://<bucket>/deploy/release.env
# (written by `./manage.py publish_image`), so a rerun leaves exactly one healthy container.
#
# Settings, all optional; production on EC2 sets none of them:
#   AWS_REGION          region of the bucket and registry (default: the rendered one)
#   AWS_ENDPOINT_URL    AWS endpoint override (e.g. a local emulator); the container gets it too
#   IMDS_ENDPOINT       instance metadata address, if not http://169.254.169.254; the container's
#                       AWS SDK gets it as AWS_EC2_METADATA_SERVICE_ENDPOINT (instance role)
#   CONTAINER_NETWORK   a Docker network for the container; "host" serves on port 8000 directly
#   HOST_PORT           host port published for the site on the default network (default 80)
#   HEALTH_TIMEOUT      seconds to wait for /health (default 300)
#   CONTAINERS_ROOT     parent of the project's host directory (default /containers)
set -Eeuo pipefail

# Facts of one environment, filled in by push_config. An unfilled copy refuses to run.
PROJECT_NAME='{{project}}'
ENV_NAME='{{env}}'
DEFAULT_REGION='{{region}}'
CONFIG_URI='{{config_uri}}'
RELEASE_URI='{{release_uri}}'

# The release image runs as this uid, listens on this port, and writes /host/logs.
APP_UID=10001
APP_PORT=8000

log() {
	printf '%s bootstrap-webserver: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

on_error() {
	log "error: line $2: '$3' failed with exit status $1"
}

# push_config fills in the facts above; running the template itself is a mistake.
check_rendered() {
	local fact
	for fact in "$PROJECT_NAME" "$ENV_NAME" "$DEFAULT_REGION" "$CONFIG_URI" "$RELEASE_URI"; do
		if [[ $fact == *'{{'* ]]; then
			die "this is the unrendered template: upload it with ./manage.py push_config --env ENV"
		fi
	done
}

# The image this environment runs, from the IMAGE= line publish_image recorded.
release_image() {
	local release line image=''
	if ! release=$(aws s3 cp --only-show-errors "$RELEASE_URI" -); then
		die "cannot read $RELEASE_URI: run ./manage.py publish_image --env $ENV_NAME TAG"
	fi
	while IFS= read -r line; do
		case $line in
		IMAGE=*) image=${line#IMAGE=} ;;
		esac
	done <<<"$release"
	[[ -n $image ]] || die "$RELEASE_URI has no IMAGE= line: run ./manage.py publish_image again"
	printf '%s\n' "$image"
}

# ECR wants a short-lived token; any other registry is reached without a login.
registry_login() {
	local registry=${1%%/*}
	case $registry in
	*.dkr.ecr.*.amazonaws.com | *.dkr.ecr.*.amazonaws.com.cn)
		log "logging in to $registry"
		aws ecr get-login-password --region "$AWS_REGION" |
			docker login --username AWS --password-stdin "$registry" >/dev/null
		;;
	*)
		log "registry $registry needs no login"
		;;
	esac
}

# /containers/<project> is the container's /host: logs and anything else that must persist.
prepare_host_dir() {
	install -d -m 0755 "$CONTAINERS_ROOT"
	install -d -m 0750 -o "$APP_UID" -g "$APP_UID" "$HOST_DIR" "$HOST_DIR/logs"
}

# Stop and remove the project's previous container, if any, so one runs afterwards.
remove_old_container() {
	if docker container inspect "$PROJECT_NAME" >/dev/null 2>&1; then
		log "replacing container $PROJECT_NAME"
		docker container rm --force "$PROJECT_NAME" >/dev/null
	fi
}

start_container() {
	local image=$1
	local args=(
		--detach --name "$PROJECT_NAME" --restart unless-stopped
		--label "project=$PROJECT_NAME" --label "env=$ENV_NAME"
		--volume "$HOST_DIR:/host"
		--env "DJANGO_CONFIG_URI=$CONFIG_URI"
		--env "AWS_REGION=$AWS_REGION" --env "AWS_DEFAULT_REGION=$AWS_REGION"
		--log-opt max-size=20m --log-opt max-file=5
	)
	if [[ -n ${CONTAINER_NETWORK:-} ]]; then
		args+=(--network "$CONTAINER_NETWORK")
	fi
	if [[ ${CONTAINER_NETWORK:-} != host ]]; then
		args+=(--publish "$HOST_PORT:$APP_PORT")
	fi
	if [[ -n ${AWS_ENDPOINT_URL:-} ]]; then
		args+=(--env "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL")
	fi
	if [[ -n ${IMDS_ENDPOINT:-} ]]; then
		args+=(--env "AWS_EC2_METADATA_SERVICE_ENDPOINT=$IMDS_ENDPOINT")
	fi
	docker container run "${args[@]}" "$image" >/dev/null
	log "started container $PROJECT_NAME from $image"
}

# Poll /health until it answers 200, the container stops, or the time is up.
wait_healthy() {
	local port=$HOST_PORT
	if [[ ${CONTAINER_NETWORK:-} == host ]]; then
		port=$APP_PORT
	fi
	local url="http://127.0.0.1:$port/health" deadline=$((SECONDS + HEALTH_TIMEOUT))
	until curl --silent --fail --max-time 5 --output /dev/null "$url"; do
		if [[ $(docker container inspect --format '{{.State.Running}}' "$PROJECT_NAME") != true ]]; then
			docker container logs --tail 50 "$PROJECT_NAME" >&2 || true
			die "container $PROJECT_NAME stopped before $url answered"
		fi
		if ((SECONDS >= deadline)); then
			docker container logs --tail 50 "$PROJECT_NAME" >&2 || true
			die "$url did not answer within ${HEALTH_TIMEOUT}s"
		fi
		sleep 2
	done
	log "$url answers: $PROJECT_NAME ($ENV_NAME) is up"
}

main() {
	trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
	check_rendered
	AWS_REGION=${AWS_REGION:-${AWS_DEFAULT_REGION:-$DEFAULT_REGION}}
	export AWS_REGION AWS_DEFAULT_REGION=$AWS_REGION
	CONTAINERS_ROOT=${CONTAINERS_ROOT:-/containers}
	HOST_DIR="$CONTAINERS_ROOT/$PROJECT_NAME"
	HOST_PORT=${HOST_PORT:-80}
	HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-300}

	local image
	image=$(release_image)
	log "release of $ENV_NAME: $image"
	prepare_host_dir
	registry_login "$image"
	docker image pull --quiet "$image" >/dev/null
	remove_old_container
	start_container "$image"
	wait_healthy
}

if ! (return 0 2>/dev/null); then
	main "$@"
fi
