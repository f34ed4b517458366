#!/usr/bin/env bash
# Stage 2 of a web server's boot: run this environment's release image as the project's one
# container behind nginx, and swap it for a new one with no failed request.
#
# Stage 1 (deploy/aws/user-data.sh) downloads this script from s3://<bucket>/deploy/<env>/webserver.sh
# and runs it as root. `./manage.py push_config` renders the environment's facts into it (the
# block below) from project.env, their one owner, and uploads it. Running it again replaces the
# container with one from the release currently recorded at s3://<bucket>/deploy/<env>/release.env
# (written by `./manage.py publish_image`), so a rerun leaves exactly one healthy container.
#
# A rerun with the same release and the same config (its S3 ETag, kept as a container label)
# leaves a healthy container alone and says "unchanged"; stage 1's timer reruns it every
# minute (REDEPLOY_EVERY), so a published release or a pushed config reaches the instance by
# itself. That poll is cheap: three conditional GETs (If-None-Match: this script's own ETag,
# refresh_stage2, then the release record's and the config's, compared with what this host
# last applied, kept in STATE_DIR), sent by curl with presigned URLs kept in STATE_DIR, and
# nothing pulled or inspected beyond the running container when none changed (object_etag).
#
# Releases that fail, and what this instance reports (www/ops/releases.py reads the same keys):
#   - When a new release never answers /health while an older one serves, this script marks it
#     failed (releases/failed/<digest>.json, written with If-None-Match so the first failing
#     instance's reason stands) and points the release record back to the release it names as
#     PREVIOUS_* (with If-Match on the ETag it read, so a newer publish is never overwritten).
#   - A release marked failed is never tried: the instance keeps (or returns to) the previous
#     one and says so in its status.
#   - After every run, the EXIT trap writes status/<instance-id>.json: the release it runs,
#     the config's ETag, whether /health answers, the one-line reason when not, and when.
#   Writing both needs an AWS CLI that knows --if-none-match/--if-match (2.22 or 1.36 on).
#
# The site's port (HOST_PORT, 80) is nginx's, from the distribution's packages (stage 1
# installs it). The release container listens on no port at all: its gunicorn binds a Unix
# socket in UPSTREAM_DIR (one of two slots, blue.sock and green.sock, the containers take in
# turn), which only its user and nginx's group may reach. nginx proxies to the symlink
# live.sock there, and connects through it anew for every request. Why: a release switches
# by renaming that symlink, with no nginx reload. A reload makes nginx's old workers close
# the kept-alive connections of clients (and of a load balancer), and a client that sends
# its next request on one at that moment gets a reset (seen: 2 of 8311 requests in a swap
# under load). A published Docker port cannot move between containers, and two processes
# sharing a port with SO_REUSEPORT drop the connections queued on the listener that closes.
# nginx reloads only when its site file changes (the first run on a host, a new
# FORWARDED_ALLOW_IPS or HOST_PORT).
#
# Replacing a running container (a new release, or a new config: both are read at start),
# swap_container:
#   1. the new container starts as <name>-next in the other slot while the old one keeps
#      serving; it migrates the database, so migrations must suit the release still serving
#      (add columns first, drop them a release later);
#   2. if it never answers /health on its socket, it is removed, the old container keeps
#      serving, and the script fails with one line saying so;
#   3. once it answers, live.sock is renamed to point at its socket: nginx's next
#      connection goes there, while the requests on the old one finish where they are;
#   4. once no connection waits on the old socket unaccepted, the old container stops
#      gracefully (gunicorn finishes what it holds, within its graceful_timeout) and is
#      removed, and the new one takes the name <name>.
# A run interrupted in the middle is finished by the next one (finish_interrupted_swap): the
# container live.sock points at is the one kept.
#
# On a load-balanced environment (TARGET_GROUP rendered), an instance with a container serving
# swaps out of the load balancer, ROLL_AT_ONCE instances at a time (one lease each in
# LEASE_KEYS; replace_container, roll_container):
#   1. it takes a lease, LEASE_KEY in the bucket (instance id, release, expiry after
#      LEASE_SECONDS), created with If-None-Match: *; an expired one (its holder died) or its
#      own (a killed run) is replaced with If-Match on the version read, so two instances
#      can never both hold it. Every lease held by another: a line each, exit 0, nothing
#      swapped; the timer's next run tries again;
#   2. it leaves the target group (deregister-targets) and waits until draining ends;
#   3. swap_container, which waits for the new container's /health;
#   4. it registers again and waits until the target group reports it healthy;
#   5. it deletes the lease with If-Match on the version it wrote (left alone if another
#      instance took it over after it expired).
# Any failure after step 2 (the exit trap, finish_roll): it registers again, with the old
# container still serving, and gives the lease back. A run killed out of the target group
# leaves a mark in STATE_DIR, and the next run rejoins first (rejoin_if_left). A first boot,
# with nothing serving, and an environment without a load balancer take no lease. The waits
# are the AWS CLI's (aws elbv2 wait), bounded by TARGET_WAIT_TIMEOUT.
#
# Settings, all optional; production on EC2 sets none of them:
#   AWS_REGION          region of the bucket and registry (default: the rendered one)
#   AWS_ENDPOINT_URL    AWS endpoint override (e.g. a local emulator); the container gets it too
#   IMDS_ENDPOINT       instance metadata address, if not http://169.254.169.254; the container's
#                       AWS SDK gets it as AWS_EC2_METADATA_SERVICE_ENDPOINT (instance role)
#   FORWARDED_ALLOW_IPS where the load balancer connects from: nginx believes X-Forwarded-For
#                       and X-Forwarded-Proto from these only (comma-separated IPs or CIDRs;
#                       default: the VPC's ranges from instance metadata). The container's
#                       gunicorn believes only nginx.
#   CONTAINER_NAME      the container's name (default: the project's name)
#   CONTAINER_NETWORK   a Docker network for the container (e.g. "host", for services on the
#                       host's loopback: tests only)
#   HOST_PORT           port the site (nginx) answers on (default 80)
#   HEALTH_TIMEOUT      seconds to wait for /health (default 300)
#   CONTAINERS_ROOT     parent of the project's host directory and of its UPSTREAM_DIR,
#                       <project>-upstream (default: project.env's CONTAINERS_ROOT)
#   STATE_DIR           what this host last applied (default /var/lib/bootstrap-webserver)
#   INSTANCE_ID         this instance's id, naming its status object and its target
#                       (default: from IMDS)
#   TARGET_WAIT_TIMEOUT load-balanced only: the longest wait, in seconds, for draining and
#                       then for the target group's health check (default 180)
#   LEASE_SECONDS       load-balanced only: how long the lease holds before another instance
#                       may take it over (default HEALTH_TIMEOUT + 2 * TARGET_WAIT_TIMEOUT + 120)
#   CONTAINER_LOG_DRIVER  where the container's output goes: awslogs (default: CloudWatch Logs,
#                       group LOG_GROUP, stream <instance-id>/<container>, through the instance
#                       role) or json-file (this host only, e.g. a Docker daemon without AWS
#                       credentials; the boot log is sent all the same)
#   BOOTSTRAP_LOG       the boot log that stage 1 writes (default /var/log/bootstrap.log); its
#                       new lines go to the stream <instance-id>/boot when this script ends
set -Eeuo pipefail

# Facts of one environment, filled in by push_config. An unfilled copy refuses to run.
PROJECT_NAME='{{project}}'
ENV_NAME='{{env}}'
DEFAULT_REGION='{{region}}'
CONFIG_URI='{{config_uri}}'
# This script's own object, which stage 1 keeps a copy of (refresh_stage2).
STAGE2_URI='{{stage2_uri}}'
RELEASE_URI='{{release_uri}}'
STATUS_PREFIX='{{status_prefix}}'
FAILED_PREFIX='{{failed_prefix}}'
LOG_GROUP='{{log_group}}'
# The load balancer's target group this instance leaves and rejoins around a swap (empty:
# the environment has no load balancer), and the leases that let <ENV>_ROLL_AT_ONCE instances
# at a time do so (project.env), space-separated; LEASE_KEY is then the one taken.
TARGET_GROUP='{{target_group}}'
LEASE_KEYS='{{lease_keys}}'
LEASE_KEY=''
# The uid the release image runs as (it writes /host/logs), and where the project's host
# directory goes by default: project.env's APP_UID and CONTAINERS_ROOT.
APP_UID='{{app_uid}}'
DEFAULT_CONTAINERS_ROOT='{{containers_root}}'
# Where a release container finds UPSTREAM_DIR, to bind its slot's socket in.
CONTAINER_UPSTREAM_DIR=/run/upstream
# The group nginx's workers run as (Debian's and Ubuntu's nginx.conf: user www-data): they
# alone, besides the app's uid, may reach the sockets.
NGINX_GROUP=www-data
# gunicorn's graceful_timeout is 20 s, supervisord's stopwaitsecs 25 s: docker's SIGKILL after
# this many seconds comes later than both.
STOP_TIMEOUT=30
# CPU weights (docker --cpu-shares; 1024 is Docker's default) of a container starting beside
# a serving one, and of a serving one: see swap_container.
STARTING_CPU_SHARES=256
SERVING_CPU_SHARES=1024
# A status report the same as the last one written is written again only once it is this
# many minutes old: a timer run that changes nothing then makes one AWS CLI call less (each
# is about half a second of CPU on the instance), and the report's "at" still says, within
# this, that the instance's timer runs.
STATUS_REFRESH_MINUTES=10
# The poll's presigned GET URLs (aws s3 presign) are renewed once this many minutes old, and
# when S3 refuses one (the instance role's credentials they were signed with expired first);
# each is valid for PRESIGN_EXPIRES_SECONDS.
PRESIGN_RENEW_MINUTES=50
PRESIGN_EXPIRES_SECONDS=3600
# nginx's site for the project (Debian's nginx.conf includes conf.d/*.conf), and the default
# site the package enables on port 80, which would hold HOST_PORT.
NGINX_SITE_DIR=/etc/nginx/conf.d
NGINX_DEFAULT_SITE=/etc/nginx/sites-enabled/default
NGINX_PID_FILE=/run/nginx.pid
# How long old nginx workers may take to finish their requests after a reload: longer than
# the site's proxy_read_timeout (60 s), after which they have nothing left to wait for.
NGINX_DRAIN_TIMEOUT=70
# How long a retired container's socket may keep connections queued (nginx connected before
# the switch, gunicorn has not accepted them yet) before it stops all the same.
SOCKET_DRAIN_TIMEOUT=10

# The name this stage's log lines carry; then log, die, on_error and aws_cli, rendered in by
# push_config from deploy/aws/boot-functions.sh (stage 1 has the same).
LOG_TAG=bootstrap-webserver
#{{boot_functions}}

# Refuse anything but comma-separated addresses and CIDRs: they go into nginx's config.
check_ranges() {
	[[ $1 =~ ^[0-9A-Fa-f:.]+(/[0-9]+)?(,[0-9A-Fa-f:.]+(/[0-9]+)?)*$ ]] ||
		die "FORWARDED_ALLOW_IPS=$1: set it to comma-separated addresses or CIDRs (the load balancer's subnets)"
}

# FORWARDED_ALLOW_IPS, the load balancer's ranges nginx believes forwarded headers from: as
# set, or the VPC's ranges from instance metadata.
resolve_proxy_ranges() {
	if [[ -z ${FORWARDED_ALLOW_IPS:-} ]] && ! FORWARDED_ALLOW_IPS=$(vpc_ranges); then
		die "cannot read the VPC's address ranges from instance metadata (mac, vpc-ipv4-cidr-blocks): set FORWARDED_ALLOW_IPS"
	fi
	check_ranges "$FORWARDED_ALLOW_IPS"
	log "nginx believes X-Forwarded-For and X-Forwarded-Proto from $FORWARDED_ALLOW_IPS"
}

# The VPC's IPv4 ranges, comma-separated, from instance metadata: a load balancer in front of
# this instance sends from them, so nginx believes X-Forwarded-Proto from there only.
vpc_ranges() {
	local imds=${IMDS_ENDPOINT:-http://169.254.169.254} token mac
	imds=${imds%/}
	token=$(curl --silent --fail --max-time 5 --request PUT \
		--header 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$imds/latest/api/token") || return 1
	mac=$(curl --silent --fail --max-time 5 --header "X-aws-ec2-metadata-token: $token" \
		"$imds/latest/meta-data/mac") || return 1
	curl --silent --fail --max-time 5 --header "X-aws-ec2-metadata-token: $token" \
		"$imds/latest/meta-data/network/interfaces/macs/$mac/vpc-ipv4-cidr-blocks" | paste -sd, -
}

# push_config fills in the facts above; running the template itself is a mistake.
check_rendered() {
	local fact
	for fact in "$PROJECT_NAME" "$ENV_NAME" "$DEFAULT_REGION" "$CONFIG_URI" "$RELEASE_URI" \
		"$STATUS_PREFIX" "$FAILED_PREFIX" "$LOG_GROUP" "$TARGET_GROUP" "$LEASE_KEYS" "$APP_UID" \
		"$DEFAULT_CONTAINERS_ROOT" "$STAGE2_URI"; do
		if [[ $fact == *'{{'* ]]; then
			# unrendered, this copy has no log or die either
			printf '%s: error: this is the unrendered template: upload it with ./manage.py push_config --env ENV\n' "$LOG_TAG" >&2
			exit 1
		fi
	done
}

# docker run's options for container $1's output: CloudWatch Logs through the awslogs driver
# (credentials: the daemon's, i.e. the instance role), non-blocking with a 4 MB buffer so a
# slow CloudWatch drops lines instead of stalling the app; or CONTAINER_LOG_DRIVER's.
log_options() {
	local name=$1
	if [[ $CONTAINER_LOG_DRIVER != awslogs ]]; then
		printf '%s\n' --log-driver "$CONTAINER_LOG_DRIVER" --log-opt max-size=20m --log-opt max-file=5
		return 0
	fi
	printf '%s\n' --log-driver awslogs \
		--log-opt "awslogs-region=$AWS_REGION" --log-opt "awslogs-group=$LOG_GROUP" \
		--log-opt "awslogs-stream=${INSTANCE_ID:-$HOSTNAME}/$name" --log-opt awslogs-create-group=false \
		--log-opt mode=non-blocking --log-opt max-buffer-size=4m
	if [[ -n ${AWS_ENDPOINT_URL:-} ]]; then
		printf '%s\n' --log-opt "awslogs-endpoint=$AWS_ENDPOINT_URL"
	fi
}

# The boot log's lines from byte $2 on, as CloudWatch log events (JSON) in file $3; prints
# the offset they end at. A line's time is the one it starts with (log lines do), else the
# one before it (the first one found for lines before any); never earlier than the line before.
boot_log_events() {
	python3 - "$1" "$2" "$3" <<-'PYTHON'
		import datetime, json, os, sys
		path, offset, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
		with open(path, "rb") as log:
		    log.seek(offset)
		    data = log.read(900_000)  # one PutLogEvents call takes at most 1 MB
		end = data.rfind(b"\n") + 1  # whole lines only; a partial one goes next time
		lines = [l for l in data[:end].decode("utf-8", "replace").splitlines() if l.strip()]
		def time_of(line):
		    try:
		        moment = datetime.datetime.strptime(line[:20], "%Y-%m-%dT%H:%M:%SZ")
		    except ValueError:
		        return None
		    return int(moment.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
		times = [time_of(line) for line in lines]
		stamp = next((t for t in times if t), int(os.stat(path).st_mtime * 1000))
		events = []
		for line, moment in zip(lines, times):
		    stamp = max(stamp, moment or 0)
		    events.append({"timestamp": stamp, "message": line})
		with open(out, "w") as f:
		    json.dump(events[-10_000:], f)  # and at most 10,000 events
		print(offset + end)
	PYTHON
}

# Send the boot log's lines not sent yet (stages 1 and 2) to the stream <instance-id>/boot,
# so a boot that failed is readable with ./manage.py logs, without SSH. Through the AWS CLI
# and the instance role, whatever CONTAINER_LOG_DRIVER says. Best effort: it never changes
# this script's exit status. The offset sent so far is kept beside the log.
ship_boot_log() {
	local file=${BOOTSTRAP_LOG:-/var/log/bootstrap.log} sent=0 next events
	# not a file (/dev/null: the timer's runs log to the journal), or no instance to name it by
	[[ -f $file && -n ${INSTANCE_ID:-} ]] || return 0
	sleep 1 # stage 1's tee writes the lines this script printed last to the file
	[[ -s $file.shipped ]] && sent=$(<"$file.shipped")
	events=$(mktemp)
	if next=$(boot_log_events "$file" "$sent" "$events") && [[ $(<"$events") != "[]" ]]; then
		aws_cli logs create-log-stream --log-group-name "$LOG_GROUP" \
			--log-stream-name "$INSTANCE_ID/boot" >/dev/null 2>&1 || true # exists after the first boot
		if aws_cli logs put-log-events --log-group-name "$LOG_GROUP" \
			--log-stream-name "$INSTANCE_ID/boot" --log-events "file://$events" >/dev/null; then
			printf '%s\n' "$next" >"$file.shipped"
		else
			log "warning: the boot log did not reach CloudWatch Logs $LOG_GROUP (see above)"
		fi
	fi
	rm -f "$events"
}

# Key $1's S3 ETag (quotes dropped); fails, with a line saying why, when it is unreadable. A
# GET with curl and a presigned URL, conditional on the ETag this returned last time (kept in
# STATE_DIR): S3 answers 304 with no body when the object is unchanged. An AWS CLI call costs
# about half a second of CPU (mostly importing the CLI), curl a few milliseconds, and every
# instance polls every minute. A URL S3 refuses (403, or 400 ExpiredToken: signed with role
# credentials that have since expired) is presigned again, once. With file $2, a body S3
# sends (the object changed) is written there, whole or not at all; without, none is kept.
object_etag() {
	local key=$1 body_file=${2:-} cache seen='' headers body=/dev/null status='' etag attempt
	install -d -m 0700 "$STATE_DIR/presigned"
	cache="$STATE_DIR/presigned/$(printf '%s' "$BUCKET/$key" | sha256sum | cut -c1-16)"
	[[ -s $cache.etag ]] && seen=$(<"$cache.etag")
	headers=$(mktemp "$STATE_DIR/presigned/headers.XXXXXX")
	if [[ -n $body_file ]]; then
		body=$(mktemp "$body_file.XXXXXX") # beside it: renamed into place whole
	fi
	for attempt in cached renewed; do
		if ! presign "$key" "$cache" "$attempt"; then
			status="no request sent: aws s3 presign failed (above)"
			break
		fi
		# -q first: no ~/.curlrc (its "verbose" would print the signed URL)
		status=$(curl -q --silent --max-time 20 --retry 2 --output "$body" \
			--dump-header "$headers" --write-out '%{http_code}' \
			${seen:+--header "If-None-Match: \"$seen\""} --config "$cache.curl") || status=000
		[[ $status == 400 || $status == 403 ]] || break
	done
	etag=$(sed -n 's/^[Ee][Tt][Aa][Gg]: *"\{0,1\}\([^"\r]*\)"\{0,1\}\r\{0,1\}$/\1/p' "$headers" | tail -n 1)
	rm -f "$headers"
	case $status in
	304) etag=$seen ;;
	200) [[ -n $etag ]] || status="200 with no ETag" ;;
	000) status="no answer (curl: no connection, or timed out)" ;;
	esac
	if [[ -n $body_file ]]; then
		if [[ $status == 200 ]] && ! mv "$body" "$body_file"; then
			status="cannot write $body_file"
		fi
		rm -f "$body"
	fi
	if [[ $status != 200 && $status != 304 ]]; then
		log "GET s3://$BUCKET/$key: $status"
		return 1
	fi
	printf '%s\n' "$etag" >"$cache.etag"
	printf '%s\n' "$etag"
}

# Write curl's config file $2.curl for key $1's presigned GET URL: made anew when it is
# missing, PRESIGN_RENEW_MINUTES old, or $3 is "renewed"; kept otherwise. The URL is a
# credential to read that object until it expires: it stays in STATE_DIR (0700), in a file
# curl reads (not on a command line ps shows), and no log line carries it.
presign() {
	local key=$1 file=$2.curl config=$STATE_DIR/presigned/aws-config url endpoint=() domain
	if [[ $3 == cached && -s $file && -z $(find "$file" -mmin "+$PRESIGN_RENEW_MINUTES") ]]; then
		return 0
	fi
	# Signature version 4 whatever the CLI's default: version 1 CLIs sign with version 2, which
	# S3 refuses for buckets made since June 2020.
	printf '[default]\ns3 =\n    signature_version = s3v4\n' >"$config"
	if [[ -z ${AWS_ENDPOINT_URL:-} ]]; then
		# The bucket's regional host, as version 2 CLIs sign for: version 1 CLIs sign for the
		# global one, which answers 307 (curl does not follow) in a new bucket's first hours.
		domain=amazonaws.com
		if [[ $AWS_REGION == cn-* ]]; then
			domain=amazonaws.com.cn
		fi
		endpoint=(--endpoint-url "https://s3.$AWS_REGION.$domain")
		printf '    addressing_style = virtual\n' >>"$config"
	fi
	url=$(AWS_CONFIG_FILE=$config aws_cli "${endpoint[@]}" s3 presign "s3://$BUCKET/$key" \
		--expires-in "$PRESIGN_EXPIRES_SECONDS") || return 1
	(umask 077 && printf 'url = "%s"\n' "$url" >"$file")
}

# The release record publish_image wrote (www/ops/releases.py), into RELEASE_IMAGE, RELEASE_TAG,
# PREVIOUS_IMAGE, PREVIOUS_TAG and RECORD_ETAG (the version read, for a conditional write).
read_release() {
	local record line
	record=$(mktemp)
	RELEASE_IMAGE='' RELEASE_TAG='' PREVIOUS_IMAGE='' PREVIOUS_TAG=''
	if ! RECORD_ETAG=$(aws_cli s3api get-object --bucket "$BUCKET" --key "$RELEASE_KEY" "$record" \
		--query ETag --output text); then
		rm -f "$record"
		die "cannot read $RELEASE_URI: run ./manage.py publish_image --env $ENV_NAME TAG"
	fi
	while IFS= read -r line; do
		case $line in
		IMAGE=*) RELEASE_IMAGE=${line#IMAGE=} ;;
		TAG=*) RELEASE_TAG=${line#TAG=} ;;
		PREVIOUS_IMAGE=*) PREVIOUS_IMAGE=${line#PREVIOUS_IMAGE=} ;;
		PREVIOUS_TAG=*) PREVIOUS_TAG=${line#PREVIOUS_TAG=} ;;
		esac
	done <"$record"
	rm -f "$record"
	[[ -n $RELEASE_IMAGE ]] ||
		die "$RELEASE_URI has no IMAGE= line: run ./manage.py publish_image again"
}

# The image this environment runs, from the IMAGE= line publish_image recorded.
release_image() {
	read_release
	printf '%s\n' "$RELEASE_IMAGE"
}

# The key of image $1's failed mark (by digest: a tag can move, a digest cannot).
failed_key() {
	local digest=${1##*@}
	printf '%s%s.json\n' "$FAILED_PREFIX" "${digest#sha256:}"
}

# The reason image $1 is marked failed (status 0), or status 1 when it is not.
failed_reason() {
	local mark reason
	mark=$(mktemp)
	if ! aws_cli s3api get-object --bucket "$BUCKET" --key "$(failed_key "$1")" "$mark" \
		>/dev/null 2>&1; then
		rm -f "$mark"
		return 1
	fi
	reason=$(sed -n 's/^ *"reason": *"\(.*\)",\{0,1\} *$/\1/p' "$mark")
	rm -f "$mark"
	printf '%s\n' "${reason:-no reason given}"
}

# A JSON string (control characters dropped).
json_string() {
	local text=${1//\\/\\\\}
	text=${text//\"/\\\"}
	printf '"%s"' "$(printf '%s' "$text" | tr -d '\000-\037')"
}

# Upload file $2 as key $3 of content type $4, with extra put-object options ${@:5}; the CLI's
# error lines go to file $1. Private and encrypted, like everything under deploy/.
put_object() {
	local errors=$1 body=$2 key=$3 content_type=$4
	shift 4
	aws_cli s3api put-object --bucket "$BUCKET" --key "$key" --body "$body" \
		--content-type "$content_type" --server-side-encryption AES256 \
		"$@" >/dev/null 2>"$errors"
}

# Mark image $1 (tag $2) failed with reason $3 unless an instance did first (If-None-Match),
# then point the record back to PREVIOUS_* unless it changed since it was read (If-Match).
mark_release_failed() {
	local image=$1 tag=$2 reason=$3 body errors
	body=$(mktemp) errors=$(mktemp)
	printf '{\n "tag": %s,\n "image": %s,\n "instance": %s,\n "reason": %s,\n "at": %s\n}\n' \
		"$(json_string "$tag")" "$(json_string "$image")" "$(json_string "$INSTANCE_ID")" \
		"$(json_string "$reason")" "$(json_string "$(date -u +%Y-%m-%dT%H:%M:%SZ)")" >"$body"
	if put_object "$errors" "$body" "$(failed_key "$image")" application/json \
		--if-none-match '*'; then
		log "marked release $tag failed: $reason"
	elif grep -q PreconditionFailed "$errors"; then
		log "release $tag was already marked failed by another instance"
	else
		log "could not mark release $tag failed: $(tr '\n' ' ' <"$errors")"
	fi
	point_back "$image" "$body" "$errors"
	rm -f "$body" "$errors"
}

# Point the record, if it still names image $1 (version RECORD_ETAG), back to PREVIOUS_*.
point_back() {
	local image=$1 body=$2 errors=$3
	if [[ $RELEASE_IMAGE != "$image" || -z $PREVIOUS_IMAGE ]]; then
		log "the release record names no earlier release to go back to"
		return 0
	fi
	printf 'IMAGE=%s\nTAG=%s\nROLLED_BACK_FROM=%s\n' "$PREVIOUS_IMAGE" "$PREVIOUS_TAG" \
		"$RELEASE_TAG" >"$body"
	if put_object "$errors" "$body" "$RELEASE_KEY" text/plain --if-match "$RECORD_ETAG"; then
		log "release record points back to $PREVIOUS_TAG"
	elif grep -q PreconditionFailed "$errors"; then
		log "release record changed since it was read (a newer publish): left as it is"
	else
		log "could not point the release record back: $(tr '\n' ' ' <"$errors")"
	fi
}

# A release marked failed is not tried: make RELEASE_* the record's previous release instead
# (pointing the record back if no instance has yet), and say so in REFUSED.
refuse_failed_release() {
	local reason body errors
	reason=$(failed_reason "$RELEASE_IMAGE") || return 0
	REFUSED="release $RELEASE_TAG is marked failed ($reason): not trying it"
	log "$REFUSED"
	body=$(mktemp) errors=$(mktemp)
	point_back "$RELEASE_IMAGE" "$body" "$errors"
	rm -f "$body" "$errors"
	[[ -n $PREVIOUS_IMAGE ]] || die "$REFUSED, and the record names no earlier release"
	RELEASE_IMAGE=$PREVIOUS_IMAGE RELEASE_TAG=$PREVIOUS_TAG
}

# This instance's id, for its status object: INSTANCE_ID, or from IMDSv2.
instance_id() {
	local imds=${IMDS_ENDPOINT:-http://169.254.169.254} token
	imds=${imds%/}
	token=$(curl --silent --fail --max-time 5 --request PUT \
		--header 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$imds/latest/api/token") &&
		curl --silent --fail --max-time 5 --header "X-aws-ec2-metadata-token: $token" \
			"$imds/latest/meta-data/instance-id"
}

# Write status/<instance-id>.json: what serves here, whether it answers /health, and the one
# line why not (this run's error, or a refused release). Runs at exit, whatever happened;
# skipped when the last report written (kept in STATE_DIR) says the same and is recent.
report_status() {
	local status=${1:-$?} healthy=false reason='' body errors
	[[ -n ${INSTANCE_ID:-} ]] || return 0
	read_serving
	if slot_answers_health "$SERVING_SLOT"; then
		healthy=true
	fi
	if ((status != 0)) && [[ -s ${FAILURE_FILE:-} ]]; then
		reason=$(head -n 1 "$FAILURE_FILE")
	elif ((status != 0)); then
		reason="stage 2 failed (exit status $status): see /var/log/bootstrap.log"
	elif [[ -n ${REFUSED:-} ]]; then
		reason=$REFUSED
	elif [[ $healthy == false ]]; then
		reason="no container answers /health"
	fi
	body=$(mktemp) errors=$(mktemp)
	printf '{\n "instance": %s,\n "release": %s,\n "image": %s,\n "config_etag": %s,\n "healthy": %s,\n "reason": %s,\n "at": %s\n}\n' \
		"$(json_string "$INSTANCE_ID")" "$(json_string "$SERVING_RELEASE")" "$(json_string "$SERVING_IMAGE")" \
		"$(json_string "$SERVING_CONFIG")" "$healthy" "$(json_string "$reason")" \
		"$(json_string "$(date -u +%Y-%m-%dT%H:%M:%SZ)")" >"$body"
	if reported_recently "$body"; then
		rm -f "$body" "$errors"
		return 0
	fi
	if put_object "$errors" "$body" "$STATUS_PREFIX$INSTANCE_ID.json" application/json; then
		cp "$body" "$STATE_DIR/status.json" 2>/dev/null || true
	else
		log "could not write its status: $(tr '\n' ' ' <"$errors")"
	fi
	rm -f "$body" "$errors"
}

# Whether the last report written (STATE_DIR/status.json) says what report $1 says, "at"
# aside, and was written less than STATUS_REFRESH_MINUTES ago.
reported_recently() {
	local last=$STATE_DIR/status.json
	[[ -f $last && -z $(find "$last" -mmin "+$STATUS_REFRESH_MINUTES") ]] &&
		cmp -s <(grep -v '^ "at":' "$1") <(grep -v '^ "at":' "$last")
}

# The config's version (its S3 ETag); also the check that the config is there at all.
config_etag() {
	local path=${CONFIG_URI#s3://}
	if ! object_etag "${path#*/}"; then
		die "cannot read $CONFIG_URI: run ./manage.py push_config --env $ENV_NAME (and check the instance role)"
	fi
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
# /containers/<project>-upstream holds the containers' sockets, for nginx's group to reach.
# Both outlive a reboot: Docker restarts the serving container before stage 2 runs again.
prepare_host_dir() {
	install -d -m 0755 "$CONTAINERS_ROOT"
	install -d -m 0750 -o "$APP_UID" -g "$APP_UID" "$HOST_DIR" "$HOST_DIR/logs"
	install -d -m 0750 -o "$APP_UID" -g "$NGINX_GROUP" "$UPSTREAM_DIR"
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

# Container $1's slot (its bootstrap.slot label): blue or green; empty for none or no container.
container_slot() {
	docker container inspect --format '{{index .Config.Labels "bootstrap.slot"}}' "$1" 2>/dev/null || true
}

# Which of containers $@ exist: their names, one a line (none: empty).
existing_containers() {
	docker container inspect --format '{{.Name}}' "$@" 2>/dev/null | sed 's|^/||' || true
}

# The serving container (CONTAINER_NAME) as it is now, read with one docker call, in
# SERVING_RUNNING (true or false), SERVING_IMAGE, SERVING_SLOT, SERVING_RELEASE and
# SERVING_CONFIG (its labels); all empty when there is none. A timer run that finds
# nothing to do makes as few docker calls as it can: each costs tens of milliseconds of CPU.
read_serving() {
	local state
	SERVING_RUNNING='' SERVING_IMAGE='' SERVING_SLOT='' SERVING_RELEASE='' SERVING_CONFIG=''
	state=$(docker container inspect --format '{{.State.Running}}|{{.Config.Image}}|{{index .Config.Labels "bootstrap.slot"}}|{{index .Config.Labels "bootstrap.release"}}|{{index .Config.Labels "bootstrap.config-etag"}}' \
		"$CONTAINER_NAME" 2>/dev/null) || return 0
	IFS='|' read -r SERVING_RUNNING SERVING_IMAGE SERVING_SLOT SERVING_RELEASE SERVING_CONFIG <<<"$state"
}

# Whether slot $1's socket answers /health 200, as nginx reaches it.
slot_answers_health() {
	[[ -n $1 ]] &&
		curl --silent --fail --max-time 5 --output /dev/null \
			--unix-socket "$UPSTREAM_DIR/$1.sock" http://127.0.0.1/health
}

# Start container $1 from image $2, its gunicorn on slot $3's socket (no port: gunicorn
# believes X-Forwarded-Proto from a socket's peer, which can only be nginx), with CPU weight
# $4. No restart policy yet: a container that fails its start must not be restarted while
# wait_healthy watches it.
run_container() {
	local name=$1 image=$2 slot=$3 cpu_shares=$4
	local args=(
		--detach --name "$name" --cpu-shares "$cpu_shares"
		--label "project=$PROJECT_NAME" --label "env=$ENV_NAME" --label "bootstrap.slot=$slot"
		--label "bootstrap.config-etag=$CONFIG_ETAG" --label "bootstrap.release=${RELEASE_TAG:-}"
		--volume "$HOST_DIR:/host" --volume "$UPSTREAM_DIR:$CONTAINER_UPSTREAM_DIR"
		--env "GUNICORN_SOCKET=$CONTAINER_UPSTREAM_DIR/$slot.sock"
		--env "DJANGO_CONFIG_URI=$CONFIG_URI"
		--env "AWS_REGION=$AWS_REGION" --env "AWS_DEFAULT_REGION=$AWS_REGION"
		--env "GUNICORN_ACCESS_LOG=-" # requests in the container log: CloudWatch gets them
	)
	mapfile -t -O "${#args[@]}" args < <(log_options "$name")
	if [[ -n ${CONTAINER_NETWORK:-} ]]; then
		args+=(--network "$CONTAINER_NETWORK")
	fi
	if [[ -n ${AWS_ENDPOINT_URL:-} ]]; then
		args+=(--env "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL")
	fi
	if [[ -n ${IMDS_ENDPOINT:-} ]]; then
		# with the slash: some botocore releases append paths to it without one
		args+=(--env "AWS_EC2_METADATA_SERVICE_ENDPOINT=${IMDS_ENDPOINT%/}/")
	fi
	docker container run "${args[@]}" "$image" >/dev/null
	log "started $name from $image ($UPSTREAM_DIR/$slot.sock)"
}

# Container $1, healthy, becomes one that serves: restarted by Docker (at boot too), and with
# the CPU weight of any other container.
promote_container() {
	docker container update --restart unless-stopped --cpu-shares "$SERVING_CPU_SHARES" "$1" >/dev/null
}

# Poll container $1's /health on its socket until it answers 200 (status 0), or the container
# stops or the time is up (status 1, after its last log lines).
wait_healthy() {
	local name=$1 slot state url
	local deadline=$((SECONDS + HEALTH_TIMEOUT))
	slot=$(container_slot "$name") # a label: read once, not at every poll
	url="/health on $UPSTREAM_DIR/$slot.sock"
	until slot_answers_health "$slot"; do
		state=$(docker container inspect --format '{{.State.Status}}' "$name" 2>/dev/null || echo gone)
		if [[ $state != running ]]; then
			docker container logs --tail 50 "$name" >&2 || true
			HEALTH_FAILURE="it stopped ($state) before /health answered"
			log "$name stopped ($state) before $url answered"
			return 1
		fi
		if ((SECONDS >= deadline)); then
			docker container logs --tail 50 "$name" >&2 || true
			HEALTH_FAILURE="/health did not answer within ${HEALTH_TIMEOUT}s"
			log "$name did not answer $url within ${HEALTH_TIMEOUT}s (HEALTH_TIMEOUT)"
			return 1
		fi
		sleep 1
	done
	log "$url answers: $name ($ENV_NAME) is up"
}

# Connections waiting on container $1's socket, not yet accepted by its gunicorn: the
# listening socket's queue, which only the container's network namespace lists (the host's,
# for a container on the host network); empty if unknown.
queued_connections() {
	local pid slot in_namespace=()
	slot=$(container_slot "$1")
	[[ -n $slot ]] || return 0
	if [[ ${CONTAINER_NETWORK:-} != host ]]; then
		pid=$(docker container inspect --format '{{.State.Pid}}' "$1" 2>/dev/null) || return 0
		[[ $pid != 0 ]] || return 0
		in_namespace=(nsenter --target "$pid" --net)
	fi
	"${in_namespace[@]}" ss --no-header --listening --unix src "$CONTAINER_UPSTREAM_DIR/$slot.sock" \
		2>/dev/null | awk '{ print $3; exit }'
}

# Until nginx's connections to container $1, made before live.sock moved, have been accepted:
# gunicorn's stop closes its socket, and would reset the ones still queued.
wait_socket_drained() {
	local name=$1 queued deadline=$((SECONDS + SOCKET_DRAIN_TIMEOUT))
	while queued=$(queued_connections "$name") && [[ -n $queued && $queued != 0 ]]; do
		if ((SECONDS >= deadline)); then
			log "$queued connections still wait on $name's socket after ${SOCKET_DRAIN_TIMEOUT}s: stopping it"
			return 0
		fi
		sleep 0.1
	done
}

# Stop container $1 gracefully (docker's SIGTERM reaches gunicorn through supervisord: requests
# in flight finish), then remove it.
retire_container() {
	local name=$1 image started=$SECONDS
	image=$(docker container inspect --format '{{.Config.Image}}' "$name")
	wait_socket_drained "$name"
	docker container stop --time "$STOP_TIMEOUT" "$name" >/dev/null
	docker container rm "$name" >/dev/null
	log "stopped $name ($image) in $((SECONDS - started))s"
}

# --- nginx, in front ------------------------------------------------------------------------

# The site file: HOST_PORT proxied to the serving container through live.sock.
#
# Forwarded headers: a load balancer in front (an ALB connects from the VPC's private
# addresses) says who the client is and which scheme it used; any other sender's
# X-Forwarded-For and X-Forwarded-Proto are replaced by what nginx sees, so a client cannot
# claim https (the app's SECURE_PROXY_SSL_HEADER) or another address. gunicorn's other scheme
# headers (X-Forwarded-Ssl, X-Forwarded-Protocol) are never passed on.
render_site() {
	local site
	site=$(
		cat <<-'EOF'
			# Written by stage 2 (bootstrap-webserver) at every swap: edits here are lost.
			geo $bootstrap_from_proxy {
				default 0;
			@PROXY_RANGES@
			}
			map "$bootstrap_from_proxy:$http_x_forwarded_proto" $bootstrap_forwarded_proto {
				default $scheme;
				"~^1:(https?)$" $1;
			}
			map $bootstrap_from_proxy $bootstrap_forwarded_for {
				default $remote_addr;
				1 $proxy_add_x_forwarded_for;
			}
			server {
				listen @HOST_PORT@ default_server;
				server_name _;
				server_tokens off;
				client_max_body_size 100m;
				proxy_connect_timeout 5s;
				proxy_send_timeout 60s;
				# longer than gunicorn's own timeout (30 s), which ends a stuck request first
				proxy_read_timeout 60s;
				proxy_set_header Host $http_host;
				proxy_set_header X-Forwarded-For $bootstrap_forwarded_for;
				proxy_set_header X-Forwarded-Proto $bootstrap_forwarded_proto;
				proxy_set_header X-Forwarded-Ssl "";
				proxy_set_header X-Forwarded-Protocol "";
				location / {
					proxy_pass http://unix:@LIVE_SOCKET@:;
				}
				# the app's own answer, for the load balancer; not logged
				location = /health {
					proxy_pass http://unix:@LIVE_SOCKET@:;
					access_log off;
				}
			}
		EOF
	)
	local ranges="" range
	[[ -n ${FORWARDED_ALLOW_IPS:-} ]] || resolve_proxy_ranges
	for range in ${FORWARDED_ALLOW_IPS//,/ }; do
		ranges+=$'\t'"$range 1;"$'\n'
	done
	site=${site//@PROXY_RANGES@/$ranges}
	site=${site//@HOST_PORT@/$HOST_PORT}
	printf '%s\n' "${site//@LIVE_SOCKET@/$UPSTREAM_DIR/live.sock}"
}

# The slot live.sock points at (blue or green); empty without one.
live_slot() {
	local target
	target=$(readlink "$UPSTREAM_DIR/live.sock" 2>/dev/null) || return 0
	printf '%s\n' "${target%.sock}"
}

# The nginx master's pid, if it runs.
nginx_master() {
	local pid
	[[ -s $NGINX_PID_FILE ]] || return 1
	pid=$(<"$NGINX_PID_FILE")
	[[ -e /proc/$pid ]] || return 1
	printf '%s\n' "$pid"
}

# nginx's worker processes (the master's children) right now.
nginx_workers() {
	local master=$1
	cat "/proc/$master/task/$master/children" 2>/dev/null || true
}

# nginx as a daemon that outlives this run, so without this run's open descriptors: stage 1's
# lock among them would be held for as long as nginx runs.
start_nginx() {
	(
		local path fd
		for path in "/proc/$BASHPID/fd/"*; do
			fd=${path##*/}
			if ((fd > 2)); then
				exec {fd}>&-
			fi
		done
		exec nginx </dev/null >/dev/null
	)
}

# Reload nginx with its config on disk, then wait until the workers of the old config have
# finished their requests (they close idle connections and exit), or start nginx if it is not
# running (the rig's instance has no systemd; on EC2 systemd starts it at boot).
apply_nginx() {
	local master old pid deadline=$((SECONDS + NGINX_DRAIN_TIMEOUT))
	if ! master=$(nginx_master); then
		start_nginx
		log "started nginx on port $HOST_PORT"
		return 0
	fi
	old=$(nginx_workers "$master")
	nginx -s reload
	for pid in $old; do
		while [[ -e /proc/$pid ]]; do
			if ((SECONDS >= deadline)); then
				log "nginx's old workers still hold requests after ${NGINX_DRAIN_TIMEOUT}s: going on"
				return 0
			fi
			sleep 0.1
		done
	done
	log "nginx reloaded: its old workers have finished"
}

# nginx with its site file as render_site writes it (nothing to do when it already runs with
# it): the new file is checked with nginx -t first, and a refused file is put back as it was.
apply_site() {
	local next="$NGINX_SITE.next" errors
	rm -f "$NGINX_DEFAULT_SITE"
	render_site >"$next"
	if cmp -s "$next" "$NGINX_SITE" && nginx_master >/dev/null; then
		rm -f "$next"
		return 0
	fi
	if [[ -f $NGINX_SITE ]]; then
		cp -p "$NGINX_SITE" "$NGINX_SITE.previous"
	fi
	mv "$next" "$NGINX_SITE"
	if ! errors=$(nginx -t -q 2>&1); then
		if [[ -f $NGINX_SITE.previous ]]; then
			mv "$NGINX_SITE.previous" "$NGINX_SITE"
		else
			rm -f "$NGINX_SITE"
		fi
		printf '%s\n' "$errors" >&2
		log "nginx refused the site for port $HOST_PORT (nginx -t, above)"
		return 1
	fi
	rm -f "$NGINX_SITE.previous"
	apply_nginx
	log "nginx on port $HOST_PORT proxies to $UPSTREAM_DIR/live.sock"
}

# Point live.sock at slot $1's socket: a rename, so that every connection nginx makes finds
# either the old socket or the new one, never none.
switch_live() {
	local link="$UPSTREAM_DIR/live.sock"
	[[ $(live_slot) != "$1" ]] || return 0
	ln -sfn "$1.sock" "$link.next"
	mv -T "$link.next" "$link"
	log "live.sock points at $1.sock: nginx's new requests go to $(container_on "$1")"
}

# The container in slot $1 (its name), or "nothing".
container_on() {
	local name
	for name in "$CONTAINER_NAME" "$CONTAINER_NAME-next" "$CONTAINER_NAME-previous"; do
		if [[ $(container_slot "$name") == "$1" ]]; then
			printf '%s\n' "$name"
			return 0
		fi
	done
	printf 'nothing\n'
}

# --- the swap -------------------------------------------------------------------------------

# The slot of the next container: the one container $1 is not in.
next_slot() {
	if [[ $(container_slot "$1") == blue ]]; then
		printf 'green\n'
	else
		printf 'blue\n'
	fi
}

# Put a container from image $1 in place of the serving one (if any), as described at the top
# of this file. Exits with one line when it fails, the old container still serving and
# live.sock still pointing at it. A load-balanced instance leaves its target group before
# calling this, and rejoins once it returns.
swap_container() {
	local image=$1 old='' old_image='' old_slot='' slot cpu_shares next=$CONTAINER_NAME-next
	if container_exists "$CONTAINER_NAME"; then
		old=$CONTAINER_NAME
		old_image=$(docker container inspect --format '{{.Config.Image}}' "$old")
		old_slot=$(container_slot "$old")
	fi
	slot=$(next_slot "$CONTAINER_NAME")
	remove_container "$next"
	log "trying $image as $next in slot $slot${old:+ while $old keeps serving}"
	# Beside a serving container, the new one's start (Python, the config, migrations) gets a
	# quarter of its CPU weight: the requests being served come first.
	cpu_shares=$SERVING_CPU_SHARES
	if [[ -n $old ]]; then
		cpu_shares=$STARTING_CPU_SHARES
	fi
	run_container "$next" "$image" "$slot" "$cpu_shares"
	if ! wait_healthy "$next"; then
		remove_container "$next"
		[[ -n $old ]] || die "$image did not become healthy: see its log lines above and $HOST_DIR/logs"
		if [[ $old_image != "$image" ]]; then
			# A new release beside a serving one (not a config change): no instance tries it again.
			mark_release_failed "$image" "$RELEASE_TAG" "$HEALTH_FAILURE"
		fi
		die "the new container did not become healthy: $old keeps serving $old_image"
	fi
	promote_container "$next"
	if [[ -n $old && -z $old_slot ]]; then
		# A container from before nginx publishes HOST_PORT itself: the one swap with a gap.
		log "$old holds port $HOST_PORT itself (started before nginx): stopping it first"
		docker container stop --time "$STOP_TIMEOUT" "$old" >/dev/null
	fi
	if ! apply_site; then
		remove_container "$next"
		if [[ -n $old && -z $old_slot ]]; then
			docker container start "$old" >/dev/null
		fi
		die "nginx did not take its site: ${old:-nothing} keeps serving ${old_image}"
	fi
	switch_live "$slot"
	if [[ -n $old ]]; then
		remove_container "$CONTAINER_NAME-previous"
		docker container rename "$old" "$CONTAINER_NAME-previous"
	fi
	docker container rename "$next" "$CONTAINER_NAME"
	if [[ -n $old ]]; then
		retire_container "$CONTAINER_NAME-previous"
	fi
	log "$CONTAINER_NAME ($ENV_NAME) is up on port $HOST_PORT"
}

# A run that stopped half-way (killed, or the host rebooted) left <name>-next or
# <name>-previous behind. The container live.sock points at is the one to keep: finish the
# swap towards it, or remove a new container that was never switched to.
finish_interrupted_swap() {
	local next=$CONTAINER_NAME-next previous=$CONTAINER_NAME-previous
	[[ -n $(existing_containers "$next" "$previous") ]] || return 0
	if container_exists "$next"; then
		if [[ -n $(live_slot) && $(container_slot "$next") == "$(live_slot)" ]]; then
			log "finishing an interrupted swap to $next"
			docker container start "$next" >/dev/null
			promote_container "$next"
			apply_site || die "nginx refused its site (nginx -t's lines above)"
			if container_exists "$CONTAINER_NAME"; then
				remove_container "$previous"
				docker container rename "$CONTAINER_NAME" "$previous"
			fi
			docker container rename "$next" "$CONTAINER_NAME"
		else
			log "removing $next, left by an interrupted run before live.sock was switched to it"
			remove_container "$next"
		fi
	fi
	if container_exists "$previous"; then
		if container_exists "$CONTAINER_NAME"; then
			retire_container "$previous"
		else
			# Stopped before its replacement ran (a run of the stage 2 from before nginx).
			docker container rename "$previous" "$CONTAINER_NAME"
			docker container start "$CONTAINER_NAME" >/dev/null
		fi
	fi
}

# --- the roll: out of the load balancer, one instance at a time ----------------------------

# A load-balanced instance swaps out of its target group: roll_container. Which instance may
# be out is decided by the lease, LEASE_KEY in the bucket: a JSON object naming the instance,
# the release and when it expires, written with S3's conditional writes so that two instances
# can never both hold it. One instance at a time: with two instances or more, the rest serve.

# Field $2 of the lease in file $1 (a string's quotes dropped); empty if it has none.
lease_field() {
	sed -nE "s/^ *\"$2\": *\"?([^\",]*)\"?,? *\$/\1/p" "$1" | head -n 1
}

# The CLI's error lines in file $1, on one line.
one_line() {
	tr '\n' ' ' <"$1"
}

# Whether the CLI's errors in file $1 say a conditional write lost: the object changed (412),
# or another conditional write on it was under way (409, S3's ConditionalRequestConflict).
lost_condition() {
	grep -q -e PreconditionFailed -e ConditionalRequestConflict "$1"
}

# This instance's lease for release $2, in file $1: it expires LEASE_SECONDS from now.
write_lease() {
	local now expires
	now=$(date -u +%s)
	expires=$((now + LEASE_SECONDS))
	printf '{\n "instance": %s,\n "release": %s,\n "taken_at": %s,\n "expires": %s,\n "expires_at": %s\n}\n' \
		"$(json_string "$INSTANCE_ID")" "$(json_string "$2")" \
		"$(json_string "$(date -u -d "@$now" +%Y-%m-%dT%H:%M:%SZ)")" "$expires" \
		"$(json_string "$(date -u -d "@$expires" +%Y-%m-%dT%H:%M:%SZ)")" >"$1"
}

# Upload lease file $2 on the condition ${@:3} (--if-none-match '*' or --if-match ETAG) and
# print the ETag of the version written; the CLI's error lines go to file $1.
put_lease() {
	local errors=$1 body=$2 etag
	shift 2
	etag=$(aws_cli s3api put-object --bucket "$BUCKET" --key "$LEASE_KEY" --body "$body" \
		--content-type application/json --server-side-encryption AES256 "$@" \
		--query ETag --output text 2>"$errors") || return 1
	printf '%s\n' "${etag//\"/}"
}

# The lease, into file $1; prints its ETag. Status 1: there is none; 2: it cannot be read
# (the CLI's lines in file $2).
read_lease() {
	local etag
	if etag=$(aws_cli s3api get-object --bucket "$BUCKET" --key "$LEASE_KEY" "$1" \
		--query ETag --output text 2>"$2"); then
		printf '%s\n' "${etag//\"/}"
		return 0
	fi
	if grep -q -e NoSuchKey -e 'Not Found' "$2"; then
		return 1
	fi
	return 2
}

# Take the lease for release $1; LEASE_ETAG is then the version written. A free lease is
# created (If-None-Match: *); one that expired (its holder died) or is this instance's own (a
# run that was killed) is replaced (If-Match: the version read). Status 1, after one line,
# when another instance holds it or took it first: this run swaps nothing, and the timer's
# next run tries again.
take_lease() {
	local body errors current status=1 key
	body=$(mktemp) errors=$(mktemp) current=$(mktemp)
	write_lease "$body" "$1"
	for key in $LEASE_KEYS; do
		LEASE_KEY=$key status=0
		claim_lease "$1" "$body" "$errors" "$current" || status=$?
		((status != 0)) || break
	done
	rm -f "$body" "$errors" "$current"
	return "$status"
}

# How a run that could not take lease LEASE_KEY goes on: with the next lease, or not at all.
after_busy_lease() {
	if [[ ${LEASE_KEYS##* } != "$LEASE_KEY" ]]; then
		echo "trying the next lease"
	else
		echo "not swapping now; the timer's next run tries again"
	fi
}

# take_lease's work, with its files: the lease to write ($2), the CLI's errors ($3), the
# lease read ($4).
claim_lease() {
	local release=$1 body=$2 errors=$3 current=$4 etag holder expires
	if LEASE_ETAG=$(put_lease "$errors" "$body" --if-none-match '*'); then
		log "took the lease s3://$BUCKET/$LEASE_KEY for release $release: this instance leaves target group $TARGET_GROUP, the others serve"
		return 0
	fi
	lost_condition "$errors" ||
		die "cannot write the lease s3://$BUCKET/$LEASE_KEY: $(one_line "$errors")(check the instance role: rerun ./manage.py setup_aws --env $ENV_NAME)"
	etag=$(read_lease "$current" "$errors") || {
		(($? == 1)) || die "cannot read the lease s3://$BUCKET/$LEASE_KEY: $(one_line "$errors")"
		log "the lease was given back while this run looked at it: $(after_busy_lease)"
		return 1
	}
	holder=$(lease_field "$current" instance)
	expires=$(lease_field "$current" expires)
	if [[ $holder != "$INSTANCE_ID" && $expires =~ ^[0-9]+$ ]] && ((expires > $(date -u +%s))); then
		log "the lease is held by $holder (release $(lease_field "$current" release)) until $(lease_field "$current" expires_at) (s3://$BUCKET/$LEASE_KEY): $(after_busy_lease)"
		return 1
	fi
	write_lease "$body" "$release" # its expiry counted from now, not from the first try
	if LEASE_ETAG=$(put_lease "$errors" "$body" --if-match "$etag"); then
		if [[ $holder == "$INSTANCE_ID" ]]; then
			log "took back this instance's own lease (left by an interrupted run) for release $release"
		else
			log "took over the lease $holder held, expired at $(lease_field "$current" expires_at), for release $release"
		fi
		return 0
	fi
	lost_condition "$errors" ||
		die "cannot write the lease s3://$BUCKET/$LEASE_KEY: $(one_line "$errors")"
	log "another instance took the expired lease first: $(after_busy_lease)"
	return 1
}

# Give the lease back: delete it if it is still the version this instance wrote (LEASE_ETAG),
# with If-Match. An AWS CLI without delete-object --if-match (before S3's conditional
# deletes) reads it, compares the ETag and deletes: between the two, only an instance taking
# over a lease that had expired could change it.
release_lease() {
	local errors current etag
	[[ -n ${LEASE_ETAG:-} ]] || return 0
	errors=$(mktemp) current=$(mktemp)
	if aws_cli s3api delete-object --bucket "$BUCKET" --key "$LEASE_KEY" --if-match "$LEASE_ETAG" \
		>/dev/null 2>"$errors"; then
		log "gave the lease back"
	elif grep -q -e PreconditionFailed -e NoSuchKey "$errors"; then
		log "the lease is no longer this instance's (it expired, and another instance took it): left as it is"
	elif grep -q 'Unknown options' "$errors"; then
		if etag=$(read_lease "$current" "$errors") && [[ $etag == "$LEASE_ETAG" ]] &&
			aws_cli s3api delete-object --bucket "$BUCKET" --key "$LEASE_KEY" >/dev/null 2>"$errors"; then
			log "gave the lease back (read, compared and deleted: this AWS CLI has no delete-object --if-match)"
		else
			log "the lease is no longer this instance's, or cannot be deleted: left as it is $(one_line "$errors")"
		fi
	else
		log "could not give the lease back: $(one_line "$errors")(it expires by itself)"
	fi
	rm -f "$errors" "$current"
	LEASE_ETAG=''
}

# TARGET_GROUP_ARN: the target group setup_aws created, found by its name.
find_target_group() {
	TARGET_GROUP_ARN=$(aws_cli elbv2 describe-target-groups --names "$TARGET_GROUP" \
		--query 'TargetGroups[0].TargetGroupArn' --output text) ||
		die "cannot find target group $TARGET_GROUP: run ./manage.py setup_aws --env $ENV_NAME (and check the instance role)"
}

# This instance's state in the target group: healthy, initial, draining, unused (not
# registered), ...
target_state() {
	aws_cli elbv2 describe-target-health --target-group-arn "$TARGET_GROUP_ARN" \
		--targets "Id=$INSTANCE_ID" --query 'TargetHealthDescriptions[0].TargetHealth.State' \
		--output text
}

# How many other instances the target group reports healthy.
others_in_service() {
	aws_cli elbv2 describe-target-health --target-group-arn "$TARGET_GROUP_ARN" \
		--query "length(TargetHealthDescriptions[?TargetHealth.State=='healthy' && Target.Id!='$INSTANCE_ID'])" \
		--output text
}

# The AWS CLI's waiter $1 (target-deregistered, target-in-service) on this instance, for at
# most TARGET_WAIT_TIMEOUT seconds (the waiter asks every 15 s).
wait_target() {
	timeout "$TARGET_WAIT_TIMEOUT" aws ${AWS_ENDPOINT_URL:+--endpoint-url "$AWS_ENDPOINT_URL"} \
		elbv2 wait "$1" --target-group-arn "$TARGET_GROUP_ARN" --targets "Id=$INSTANCE_ID"
}

# Leave the target group, and wait until the load balancer's requests in flight here have
# finished (its deregistration delay). The mark in STATE_DIR outlives a killed run, whose
# successor rejoins (rejoin_if_left).
leave_target_group() {
	: >"$STATE_DIR/left-target-group"
	LEFT_TARGET_GROUP=yes
	aws_cli elbv2 deregister-targets --target-group-arn "$TARGET_GROUP_ARN" \
		--targets "Id=$INSTANCE_ID" >/dev/null ||
		die "cannot leave target group $TARGET_GROUP (deregister-targets, above)"
	log "left target group $TARGET_GROUP: waiting until its requests in flight here finish (draining)"
	wait_target target-deregistered ||
		die "target group $TARGET_GROUP still drains this instance after ${TARGET_WAIT_TIMEOUT}s (TARGET_WAIT_TIMEOUT): not swapping"
	log "target group $TARGET_GROUP sends nothing here any more"
}

# Register again, and wait until the target group's health check reports this instance
# healthy: only then may another instance leave.
rejoin_target_group() {
	aws_cli elbv2 register-targets --target-group-arn "$TARGET_GROUP_ARN" \
		--targets "Id=$INSTANCE_ID" >/dev/null ||
		die "cannot rejoin target group $TARGET_GROUP (register-targets, above)"
	LEFT_TARGET_GROUP=''
	rm -f "$STATE_DIR/left-target-group"
	log "rejoined target group $TARGET_GROUP: waiting until its health check passes"
	wait_target target-in-service ||
		die "target group $TARGET_GROUP does not report this instance healthy after ${TARGET_WAIT_TIMEOUT}s (TARGET_WAIT_TIMEOUT): see its health check"
	log "target group $TARGET_GROUP reports this instance healthy"
}

# Swap to image $1 out of the target group, holding the lease (take_lease): leave it and let
# it drain, swap (which waits for the new container's /health), rejoin and wait until the
# target group reports this instance healthy, give the lease back. When anything fails on the
# way, finish_roll (at exit) rejoins with whatever serves (the old container, when the swap
# failed) and gives the lease back. An instance its target group does not know (e.g. leaving
# the Auto Scaling group) swaps where it is; so does the only instance in service (a fleet of
# one, or the others unhealthy): leaving would take the site down, while the swap on this
# host drops no request (the header's "Replacing a running container").
roll_container() {
	local state others
	find_target_group
	state=$(target_state) || die "cannot read this instance's state in target group $TARGET_GROUP (above)"
	others=$(others_in_service) || die "cannot read target group $TARGET_GROUP's health (above)"
	if [[ $state == unused ]]; then
		log "this instance is not registered in target group $TARGET_GROUP: swapping without leaving it"
		swap_container "$1"
	elif [[ $state == healthy && $others == 0 ]]; then
		log "no other instance of target group $TARGET_GROUP is healthy: swapping in service, as leaving would take the site down"
		swap_container "$1"
	else
		leave_target_group
		swap_container "$1"
		rejoin_target_group
	fi
	release_lease
}

# Put a container from image $1 in place of the serving one: rolled out of the target group
# under the lease on a load-balanced instance (roll_container), swapped in place without a
# load balancer or when nothing serves yet (a first boot: nothing to take out of service).
# LEASE_BUSY says another instance holds the lease: nothing was swapped.
replace_container() {
	LEASE_BUSY=''
	if [[ -z $TARGET_GROUP ]] || ! container_exists "$CONTAINER_NAME"; then
		swap_container "$1"
		return 0
	fi
	[[ -n ${INSTANCE_ID:-} ]] ||
		die "no instance id (instance metadata does not answer): cannot leave target group $TARGET_GROUP for the swap; set INSTANCE_ID"
	if take_lease "$RELEASE_TAG"; then
		roll_container "$1"
	else
		LEASE_BUSY=yes
	fi
}

# At exit, after a failure in the roll: rejoin the target group if this run left it (the old
# container serves, or none if there was none), then give the lease back. The failure's own
# line stays the reason reported.
finish_roll() {
	if [[ -n ${LEFT_TARGET_GROUP:-} ]]; then
		log "rejoining target group $TARGET_GROUP after the failure above"
		(FAILURE_FILE='' rejoin_target_group) || true
	fi
	release_lease || true
}

# A run killed out of the target group (the mark leave_target_group left in STATE_DIR) left
# this instance out of it: rejoin before anything else, and give back the lease if it is
# still this instance's.
rejoin_if_left() {
	local current errors etag
	[[ -n $TARGET_GROUP && -e $STATE_DIR/left-target-group ]] || return 0
	find_target_group
	log "an interrupted run left target group $TARGET_GROUP: rejoining it"
	rejoin_target_group
	current=$(mktemp) errors=$(mktemp)
	for LEASE_KEY in $LEASE_KEYS; do
		if etag=$(read_lease "$current" "$errors") &&
			[[ $(lease_field "$current" instance) == "$INSTANCE_ID" ]]; then
			LEASE_ETAG=$etag
			release_lease
		fi
	done
	rm -f "$current" "$errors"
}

# Whether the serving container, as read_serving read it, runs image $1 with the current
# config, healthy.
up_to_date() {
	[[ $SERVING_RUNNING == true && -n $1 && $SERVING_IMAGE == "$1" && $SERVING_CONFIG == "$CONFIG_ETAG" ]] &&
		slot_answers_health "$SERVING_SLOT"
}

# The settings above, with their defaults.
read_settings() {
	AWS_REGION=${AWS_REGION:-${AWS_DEFAULT_REGION:-$DEFAULT_REGION}}
	export AWS_REGION AWS_DEFAULT_REGION=$AWS_REGION
	CONTAINER_LOG_DRIVER=${CONTAINER_LOG_DRIVER:-awslogs}
	CONTAINERS_ROOT=${CONTAINERS_ROOT:-$DEFAULT_CONTAINERS_ROOT}
	HOST_DIR="$CONTAINERS_ROOT/$PROJECT_NAME"
	UPSTREAM_DIR="$CONTAINERS_ROOT/$PROJECT_NAME-upstream"
	CONTAINER_NAME=${CONTAINER_NAME:-$PROJECT_NAME}
	HOST_PORT=${HOST_PORT:-80}
	HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-300}
	NGINX_SITE="$NGINX_SITE_DIR/$PROJECT_NAME.conf"
	BUCKET=${RELEASE_URI#s3://}
	BUCKET=${BUCKET%%/*}
	RELEASE_KEY=${RELEASE_URI#s3://"$BUCKET"/}
	STAGE2_KEY=${STAGE2_URI#s3://"$BUCKET"/}
	STATE_DIR=${STATE_DIR:-/var/lib/bootstrap-webserver}
	TARGET_WAIT_TIMEOUT=${TARGET_WAIT_TIMEOUT:-180}
	# long enough for a roll: draining, a new container's start, the health check
	LEASE_SECONDS=${LEASE_SECONDS:-$((HEALTH_TIMEOUT + 2 * TARGET_WAIT_TIMEOUT + 120))}
}

main() {
	trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
	check_rendered
	read_settings
	resolve_proxy_ranges
	command -v nginx >/dev/null || die "nginx is not installed: stage 1 (deploy/aws/user-data.sh) installs it"

	install -d -m 0700 "$STATE_DIR"
	FAILURE_FILE="$STATE_DIR/last-error"
	rm -f "$FAILURE_FILE"
	INSTANCE_ID=${INSTANCE_ID:-$(instance_id || true)}
	[[ -n $INSTANCE_ID ]] || log "no instance id (IMDS does not answer): no status report"
	trap 'on_exit $?' EXIT

	refresh_stage2
	local release_etag
	release_etag=$(object_etag "$RELEASE_KEY") ||
		die "cannot read $RELEASE_URI: run ./manage.py publish_image --env $ENV_NAME TAG"
	CONFIG_ETAG=$(config_etag) || exit 1
	finish_interrupted_swap
	rejoin_if_left
	read_serving
	if [[ $release_etag == "$(cat "$STATE_DIR/release.etag" 2>/dev/null)" ]] &&
		up_to_date "$SERVING_IMAGE"; then
		keep_serving "$release_etag"
		return 0
	fi
	read_release
	log "release of $ENV_NAME: $RELEASE_IMAGE ($RELEASE_TAG)"
	refuse_failed_release
	if up_to_date "$RELEASE_IMAGE"; then
		keep_serving "$release_etag"
		return 0
	fi
	prepare_host_dir
	registry_login "$RELEASE_IMAGE"
	pull_image "$RELEASE_IMAGE"
	replace_container "$RELEASE_IMAGE"
	if [[ -n ${LEASE_BUSY:-} ]]; then
		return 0 # another instance is out of service: the next run tries again
	fi
	remember_release "$release_etag"
}

# Stage 1 runs the copy of this script it keeps (STAGE2_FILE, its path), and downloads one
# only when it has none, or when the copy's last run did not get through this function (the
# mark STAGE2_FILE.unchecked it leaves): a timer run makes no AWS CLI call for it. Here the copy
# is checked against S3's with a conditional GET (304 when unchanged), and a changed one
# (pushed by push_config) replaces the copy and runs in this one's place. Run by hand, with no
# STAGE2_FILE, this copy is the one meant.
refresh_stage2() {
	[[ -n ${STAGE2_FILE:-} ]] || return 0
	local fresh="$STAGE2_FILE.fresh"
	rm -f "$fresh"
	object_etag "$STAGE2_KEY" "$fresh" >/dev/null ||
		die "cannot read $STAGE2_URI: run ./manage.py push_config --env $ENV_NAME (and check the instance role)"
	if [[ -s $fresh ]] && ! cmp -s "$fresh" "$STAGE2_FILE"; then
		chmod 0700 "$fresh"
		mv "$fresh" "$STAGE2_FILE"
		log "a new stage 2 is in $STAGE2_URI: running it"
		exec bash "$STAGE2_FILE"
	fi
	rm -f "$fresh" "$STAGE2_FILE.unchecked"
}

# At exit with status $1, whatever happened: back into the target group and the lease given
# back after a failed roll, the status report, then the boot log (with the report's own
# lines) to CloudWatch Logs.
on_exit() {
	finish_roll
	report_status "$1" || true
	ship_boot_log || true
}

# After a release record (ETag $1) was applied: the next run's poll compares with it. Not
# after refusing a failed release, so the record pointed back is read again.
remember_release() {
	if [[ -z ${REFUSED:-} ]]; then
		printf '%s\n' "$1" >"$STATE_DIR/release.etag"
	fi
}

# The serving container (read_serving's) is the release and config wanted: keep it, and nginx
# pointing at it (nginx too: e.g. stopped, or its site from an older copy of this script).
keep_serving() {
	apply_site ||
		die "nginx refused its site (nginx -t's lines above): $CONTAINER_NAME answers on its socket only"
	switch_live "$SERVING_SLOT"
	log "$CONTAINER_NAME runs $SERVING_IMAGE with the current config, unchanged"
	remember_release "$1"
}

if ! (return 0 2>/dev/null); then
	main "$@"
fi
