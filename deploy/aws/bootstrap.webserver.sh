#!/usr/bin/env bash
# Stage 2 of a web server's boot: run this environment's release image as the project's one
# container, then wait until it answers /health.
#
# Stage 1 (deploy/aws/user-data.sh) downloads this script from s3://<bucket>/deploy/<env>/webserver.sh
# and runs it as root. `./manage.py push_config` renders the environment's facts into it (the
# block below) from project.env, their one owner, and uploads it. Running it again replaces the
# container with one from the release currently recorded at s3://<bucket>/deploy/<env>/release.env
# (written by `./manage.py publish_image`), so a rerun leaves exactly one healthy container.
#
# A rerun with the same release and the same config (its S3 ETag, kept as a container label)
# leaves a healthy container alone and says "unchanged"; stage 1's timer reruns it every few
# minutes, so a published release or a pushed config reaches the instance by itself.
#
# Replacing a running container (a new release, or a new config: both are read at start):
#   1. the new container starts as <name>-trial on TRIAL_PORT, on 127.0.0.1 only, while the
#      old one keeps serving; it migrates the database, so migrations must suit the release
#      still serving (add columns first, drop them a release later);
#   2. if the trial never answers /health, it is removed, the old container keeps serving,
#      and the script fails with one line saying so;
#   3. once it answers, it is removed, and the old container is renamed <name>-previous and
#      stopped; the new release then starts under <name> on the serving port. A port Docker
#      publishes cannot move to another container, so the site is down for this one start
#      (seconds: the trial already migrated and collected the static files). Zero downtime
#      needs two instances behind a load balancer;
#   4. if that start fails, <name>-previous is renamed back and started again; once the new
#      one answers, <name>-previous is removed. One container of the project remains.
#
# Settings, all optional; production on EC2 sets none of them:
#   AWS_REGION          region of the bucket and registry (default: the rendered one)
#   AWS_ENDPOINT_URL    AWS endpoint override (e.g. a local emulator); the container gets it too
#   IMDS_ENDPOINT       instance metadata address, if not http://169.254.169.254; the container's
#                       AWS SDK gets it as AWS_EC2_METADATA_SERVICE_ENDPOINT (instance role)
#   CONTAINER_NAME      the container's name (default: the project's name)
#   CONTAINER_NETWORK   a Docker network for the container; "host" makes the app listen on
#                       HOST_PORT and TRIAL_PORT itself (ports below 1024 are then refused)
#   HOST_PORT           port the site answers on (default 80; 8000 with CONTAINER_NETWORK=host)
#   TRIAL_PORT          loopback port of a new container on trial (default 8001)
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

# The AWS CLI, pointed at AWS_ENDPOINT_URL when it is set: CLI releases before 2.13 (e.g.
# Debian 12's) ignore that variable.
aws_cli() {
	aws ${AWS_ENDPOINT_URL:+--endpoint-url "$AWS_ENDPOINT_URL"} "$@"
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
	if ! release=$(aws_cli s3 cp --only-show-errors "$RELEASE_URI" -); then
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

# The config's version (its S3 ETag); also the check that the config is there at all.
config_etag() {
	local path=${CONFIG_URI#s3://} etag
	if ! etag=$(aws_cli s3api head-object --bucket "${path%%/*}" --key "${path#*/}" \
		--query ETag --output text); then
		die "cannot read $CONFIG_URI: run ./manage.py push_config --env $ENV_NAME (and check the instance role)"
	fi
	printf '%s\n' "${etag//\"/}"
}

# ECR wants a short-lived token; any other registry is reached without a login.
registry_login() {
	local registry=${1%%/*}
	case $registry in
	*.dkr.ecr.*.amazonaws.com | *.dkr.ecr.*.amazonaws.com.cn)
		log "logging in to $registry"
		aws_cli ecr get-login-password --region "$AWS_REGION" |
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

# Pull the image, saying which of the two usual causes stopped it.
pull_image() {
	local image=$1 output
	if output=$(docker image pull --quiet "$image" 2>&1 >/dev/null); then
		return 0
	fi
	output=${output//$'\n'/ }
	case $output in
	*"manifest unknown"* | *"not found"* | *"does not exist"*)
		die "image $image is not in the registry ($output): publish it with ./manage.py publish_image --env $ENV_NAME TAG"
		;;
	*)
		die "cannot pull $image from its registry ($output): check IMAGE_REGISTRY in project.env and that this instance reaches the registry"
		;;
	esac
}

container_exists() {
	docker container inspect "$1" >/dev/null 2>&1
}

remove_container() {
	if container_exists "$1"; then
		docker container rm --force "$1" >/dev/null
	fi
}

# Start container $1 from image $2: "serving" on HOST_PORT with a restart policy, or "trial"
# on TRIAL_PORT (loopback only) without one.
run_container() {
	local name=$1 image=$2 role=$3 port
	local args=(
		--detach --name "$name"
		--label "project=$PROJECT_NAME" --label "env=$ENV_NAME" --label "bootstrap.role=$role"
		--label "bootstrap.config-etag=$CONFIG_ETAG"
		--volume "$HOST_DIR:/host"
		--env "DJANGO_CONFIG_URI=$CONFIG_URI"
		--env "AWS_REGION=$AWS_REGION" --env "AWS_DEFAULT_REGION=$AWS_REGION"
		--log-opt max-size=20m --log-opt max-file=5
	)
	if [[ $role == serving ]]; then
		port=$HOST_PORT
		args+=(--restart unless-stopped)
	else
		port=$TRIAL_PORT
	fi
	if [[ -n ${CONTAINER_NETWORK:-} ]]; then
		args+=(--network "$CONTAINER_NETWORK")
	fi
	if [[ ${CONTAINER_NETWORK:-} == host ]]; then
		args+=(--env "PORT=$port")
	elif [[ $role == serving ]]; then
		args+=(--publish "$port:$APP_PORT")
	else
		args+=(--publish "127.0.0.1:$port:$APP_PORT")
	fi
	if [[ -n ${AWS_ENDPOINT_URL:-} ]]; then
		args+=(--env "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL")
	fi
	if [[ -n ${IMDS_ENDPOINT:-} ]]; then
		# with the slash: some botocore releases append paths to it without one
		args+=(--env "AWS_EC2_METADATA_SERVICE_ENDPOINT=${IMDS_ENDPOINT%/}/")
	fi
	docker container run "${args[@]}" "$image" >/dev/null
	log "started $name from $image (port $port)"
}

# Poll container $1's /health on port $2 until it answers 200 (status 0), or the container
# stops or the time is up (status 1, after its last log lines).
wait_healthy() {
	local name=$1 port=$2 state
	local url="http://127.0.0.1:$port/health" deadline=$((SECONDS + HEALTH_TIMEOUT))
	until curl --silent --fail --max-time 5 --output /dev/null "$url"; do
		state=$(docker container inspect --format '{{.State.Status}}' "$name" 2>/dev/null || echo gone)
		if [[ $state != running ]]; then
			docker container logs --tail 50 "$name" >&2 || true
			log "$name stopped ($state) before $url answered"
			return 1
		fi
		if ((SECONDS >= deadline)); then
			docker container logs --tail 50 "$name" >&2 || true
			log "$name did not answer $url within ${HEALTH_TIMEOUT}s (HEALTH_TIMEOUT)"
			return 1
		fi
		sleep 2
	done
	log "$url answers: $name ($ENV_NAME) is up"
}

# Whether the serving container already runs image $1 with the current config, healthy.
up_to_date() {
	local running
	running=$(docker container inspect --format \
		'{{.State.Running}} {{.Config.Image}} {{index .Config.Labels "bootstrap.config-etag"}}' \
		"$CONTAINER_NAME" 2>/dev/null) || return 1
	[[ $running == "true $1 $CONFIG_ETAG" ]] &&
		curl --silent --fail --max-time 5 --output /dev/null "http://127.0.0.1:$HOST_PORT/health"
}

# The first container on this host.
start_first() {
	local image=$1
	run_container "$CONTAINER_NAME" "$image" serving
	if ! wait_healthy "$CONTAINER_NAME" "$HOST_PORT"; then
		remove_container "$CONTAINER_NAME"
		die "$image did not become healthy: see its log lines above and $HOST_DIR/logs"
	fi
}

# Replace the serving container with one from $1, as described at the top of this file.
replace_running() {
	local image=$1 old_image trial=$CONTAINER_NAME-trial previous=$CONTAINER_NAME-previous
	old_image=$(docker container inspect --format '{{.Config.Image}}' "$CONTAINER_NAME")
	remove_container "$trial"
	log "trying $image as $trial while $CONTAINER_NAME keeps serving"
	run_container "$trial" "$image" trial
	if ! wait_healthy "$trial" "$TRIAL_PORT"; then
		remove_container "$trial"
		die "the new container did not become healthy: $CONTAINER_NAME keeps serving $old_image"
	fi
	remove_container "$trial" # it served nothing but the health check: no need to drain it

	remove_container "$previous"
	docker container rename "$CONTAINER_NAME" "$previous"
	docker container stop --time 30 "$previous" >/dev/null # lets requests in flight finish
	log "stopped $previous ($old_image)"
	run_container "$CONTAINER_NAME" "$image" serving
	if ! wait_healthy "$CONTAINER_NAME" "$HOST_PORT"; then
		remove_container "$CONTAINER_NAME"
		docker container rename "$previous" "$CONTAINER_NAME"
		docker container start "$CONTAINER_NAME" >/dev/null
		die "$image passed its trial but failed on the serving port: rolled back to $old_image"
	fi
	remove_container "$previous"
}

main() {
	trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
	check_rendered
	AWS_REGION=${AWS_REGION:-${AWS_DEFAULT_REGION:-$DEFAULT_REGION}}
	export AWS_REGION AWS_DEFAULT_REGION=$AWS_REGION
	CONTAINERS_ROOT=${CONTAINERS_ROOT:-/containers}
	HOST_DIR="$CONTAINERS_ROOT/$PROJECT_NAME"
	CONTAINER_NAME=${CONTAINER_NAME:-$PROJECT_NAME}
	if [[ ${CONTAINER_NETWORK:-} == host ]]; then
		HOST_PORT=${HOST_PORT:-$APP_PORT}
	else
		HOST_PORT=${HOST_PORT:-80}
	fi
	TRIAL_PORT=${TRIAL_PORT:-8001}
	HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-300}

	local image
	image=$(release_image) || exit 1 # release_image said why
	CONFIG_ETAG=$(config_etag) || exit 1
	log "release of $ENV_NAME: $image"
	if up_to_date "$image"; then
		log "$CONTAINER_NAME runs $image with the current config, unchanged"
		return 0
	fi
	prepare_host_dir
	registry_login "$image"
	pull_image "$image"
	# An interrupted replacement may have left the old container renamed: it is the one to replace.
	if ! container_exists "$CONTAINER_NAME" && container_exists "$CONTAINER_NAME-previous"; then
		docker container rename "$CONTAINER_NAME-previous" "$CONTAINER_NAME"
		docker container start "$CONTAINER_NAME" >/dev/null
	fi
	if container_exists "$CONTAINER_NAME"; then
		replace_running "$image"
	else
		start_first "$image"
	fi
}

if ! (return 0 2>/dev/null); then
	main "$@"
fi
