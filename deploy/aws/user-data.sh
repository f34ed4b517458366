#!/usr/bin/env bash
# Stage 1 of a web server's boot, run once as root by cloud-init: launch_ec2 passes this file
# as the instance's user-data (it must stay under EC2's 16 KB limit).
#
# It installs Docker, nginx, the AWS CLI and curl where missing, reads the instance's region
# and its `Bootstrap` tag (the S3 URI of stage 2) from instance metadata with an IMDSv2 token,
# downloads that script (once: the kept copy checks itself against S3 on later runs) and runs
# it. Everything goes to /var/log/bootstrap.log and to the console (cloud-init's output); the
# first failing command stops the boot with its line.
# A boot that fails here, before stage 2, sends that log to CloudWatch Logs itself (stage 2
# does so for every run of its own), so it is readable with ./manage.py logs, without SSH.
#
# The log is root's alone: on a failure it quotes the container's last log lines.
# launch_ec2 renders the environment's stage-2 URI into this file (STAGE2_URI below), and a
# Bootstrap tag naming anything else is refused: whoever may tag an instance and upload a
# file the instance role can read (e.g. under media/) must not get it run as root.
#
# On a systemd host it also installs a timer (bootstrap-redeploy.timer) that runs a copy of
# this script every few minutes: stage 2 leaves an up-to-date container alone, so a release
# published with `./manage.py publish_image` or a config pushed with `./manage.py push_config`
# reaches every instance within minutes, with no login and no new launch. Those runs log to
# the journal (journalctl -u bootstrap-redeploy). A lock keeps two runs from overlapping.
#
# Settings, all optional; production on EC2 sets none of them. They let both stages run
# outside EC2, e.g. in a container that plays the instance:
#   IMDS_ENDPOINT     instance metadata address (default http://169.254.169.254); the AWS CLI
#                     and stage 2 get it as AWS_EC2_METADATA_SERVICE_ENDPOINT
#   AWS_ENDPOINT_URL  AWS endpoint override, honoured by the AWS CLI and passed on to stage 2
#   BOOTSTRAP_LOG     log file (default /var/log/bootstrap.log)
#   BOOTSTRAP_DIR     where stage 2 is kept, for reruns by hand (default /var/lib/bootstrap)
#   REDEPLOY_EVERY    how often the timer reruns the stages (systemd time span, default 1min);
#                     "off" installs no timer (e.g. when trying this script on a workstation)
set -Eeuo pipefail

# This environment's stage 2, filled in by launch_ec2 from project.env (www/project.py), the
# facts' one owner. An unfilled copy refuses to run.
STAGE2_URI='{{stage2_uri}}'
# The environment's CloudWatch Logs group, where a failed boot's log goes.
LOG_GROUP='{{log_group}}'

# The CPU weight (cgroup v2 cpu.weight) of the timer's runs. systemd's default, 100, would put
# their AWS CLI calls (about half a second of CPU each) ahead of the requests being served:
# Docker makes a serving container's 1,024 shares a weight of 39, and a starting one's 256 a
# weight of 10 (webserver.sh's SERVING_ and STARTING_CPU_SHARES). The timer weighs as the
# starting container does.
REDEPLOY_CPU_WEIGHT=10

# The name this stage's log lines carry; then log, die, on_error and aws_cli, rendered in by
# launch_ec2 from deploy/aws/boot-functions.sh (stage 2 has the same).
LOG_TAG=bootstrap
#{{boot_functions}}

# Install Debian/Ubuntu packages, refreshing the package lists once.
apt_install() {
	if [[ -z ${apt_updated:-} ]]; then
		apt-get update -qq
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# Docker, nginx (stage 2's proxy), ss, the AWS CLI and curl, each only when missing (a prepared
# AMI needs none). The package starts nginx and enables it at boot (systemd).
install_tools() {
	command -v curl >/dev/null || apt_install ca-certificates curl
	if ! command -v docker >/dev/null; then
		apt_install docker.io
	fi
	command -v nginx >/dev/null || apt_install nginx
	command -v ss >/dev/null || apt_install iproute2 # stage 2 watches sockets drain with ss
	if ! command -v aws >/dev/null; then
		if apt-cache show awscli >/dev/null 2>&1; then
			apt_install awscli
		elif command -v snap >/dev/null; then
			snap install aws-cli --classic # Ubuntu 24.04 ships the CLI as a snap only
		else
			die "no way to install the AWS CLI on this image: use a Debian or Ubuntu AMI"
		fi
	fi
}

# Docker's daemon: started by systemd on an instance, already running elsewhere.
ensure_docker_running() {
	local attempt
	docker info >/dev/null 2>&1 && return 0
	if [[ -d /run/systemd/system ]]; then
		systemctl enable --now docker
	fi
	for attempt in {1..30}; do
		docker info >/dev/null 2>&1 && return 0
		log "waiting for the Docker daemon ($attempt/30)"
		sleep 2
	done
	die "the Docker daemon is not running"
}

# Rerun this script every few minutes (see the top of the file); systemd hosts only.
install_redeploy_timer() {
	local copy="$BOOTSTRAP_DIR/user-data.sh" units=/etc/systemd/system
	[[ -d /run/systemd/system && $REDEPLOY_EVERY != off ]] || return 0
	[[ ! ${BASH_SOURCE[0]} -ef $copy ]] || return 0 # the timer's own run: all in place
	install -m 0700 "${BASH_SOURCE[0]}" "$copy"
	cat >"$units/bootstrap-redeploy.service" <<-EOF
		[Unit]
		Description=Web server boot stages again: pick up a new release or config
		After=docker.service
		[Service]
		Type=oneshot
		Environment=BOOTSTRAP_LOG=/dev/null
		CPUWeight=$REDEPLOY_CPU_WEIGHT
		ExecStart=$copy
	EOF
	cat >"$units/bootstrap-redeploy.timer" <<-EOF
		[Unit]
		Description=Run bootstrap-redeploy.service every few minutes
		[Timer]
		OnActiveSec=5min
		OnUnitInactiveSec=$REDEPLOY_EVERY
		[Install]
		WantedBy=timers.target
	EOF
	systemctl daemon-reload
	systemctl enable --now bootstrap-redeploy.timer
}

# An IMDSv2 session token; instances launched by launch_ec2 accept no other kind of request.
imds_token() {
	curl --silent --show-error --fail --max-time 5 --retry 5 --retry-connrefused \
		--request PUT --header 'X-aws-ec2-metadata-token-ttl-seconds: 600' \
		"$IMDS_URL/latest/api/token"
}

# One metadata value, e.g. `imds placement/region`.
imds() {
	curl --silent --show-error --fail --max-time 5 --retry 5 --retry-connrefused \
		--header "X-aws-ec2-metadata-token: $IMDS_TOKEN" \
		"$IMDS_URL/latest/meta-data/$1"
}

# Everything from here on goes to the console and to $BOOTSTRAP_LOG, a file only root may
# read: it may quote the container's log. A log file left readable by an older boot is fixed.
open_log() {
	if [[ ! -e $BOOTSTRAP_LOG ]]; then
		(umask 077 && : >>"$BOOTSTRAP_LOG")
	fi
	if [[ -f $BOOTSTRAP_LOG && ! -L $BOOTSTRAP_LOG ]]; then # never /dev/null (the timer's runs)
		chmod 0600 "$BOOTSTRAP_LOG"
	fi
	# fds 3 and 4 keep the console, for ship_failed_boot
	exec 3>&1 4>&2 > >(tee -a "$BOOTSTRAP_LOG") 2>&1
	LOG_TEE=$!
}

# After a failed stage 1 (stage 2 never ran, so its EXIT trap did not either): send the boot
# log's lines not sent yet to <instance-id>/boot in LOG_GROUP, the stream stage 2 writes, with
# the offset sent kept beside the log as stage 2 keeps it. Through the AWS CLI and the
# instance role: no key in user-data. Best effort; the exit status stays the failure's.
ship_failed_boot() {
	local file=$BOOTSTRAP_LOG sent=0 events next attempt id
	(($1 != 0)) || return 0
	trap - ERR
	set +e
	exec 1>&3 2>&4 3>&- 4>&- # the log's writer sees its input end and finishes the file
	for attempt in {1..50}; do
		kill -0 "$LOG_TEE" 2>/dev/null || break
		sleep 0.1
	done
	# not a file (/dev/null: the timer's runs), or this template unrendered
	[[ -f $file && $LOG_GROUP != *'{{'* ]] || return 0
	if ! command -v aws >/dev/null || ! command -v python3 >/dev/null; then
		log "warning: no AWS CLI or python3: the boot log stays in $file"
		return 0
	fi
	IMDS_URL=${IMDS_ENDPOINT:-http://169.254.169.254}
	IMDS_URL=${IMDS_URL%/}
	[[ -z ${IMDS_ENDPOINT:-} ]] || export AWS_EC2_METADATA_SERVICE_ENDPOINT=$IMDS_URL/
	if ! IMDS_TOKEN=$(imds_token) || ! id=$(imds instance-id) ||
		! AWS_REGION=${AWS_REGION:-$(imds placement/region)}; then
		log "warning: instance metadata does not answer: the boot log stays in $file"
		return 0
	fi
	export AWS_REGION AWS_DEFAULT_REGION=$AWS_REGION
	[[ -s $file.shipped ]] && sent=$(<"$file.shipped")
	events=$(mktemp)
	# the lines from byte $sent on as log events, each at the time it starts with (else the
	# time before it); prints the offset they end at
	next=$(python3 - "$file" "$sent" "$events" <<-'PYTHON'
		import datetime, json, os, sys
		path, offset, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
		with open(path, "rb") as log:
		    log.seek(offset)
		    data = log.read(900_000)  # one PutLogEvents call: at most 1 MB
		end = data.rfind(b"\n") + 1
		lines = [l for l in data[:end].decode("utf-8", "replace").splitlines() if l.strip()]
		def time_of(line):
		    try:
		        at = datetime.datetime.strptime(line[:20], "%Y-%m-%dT%H:%M:%SZ")
		    except ValueError:
		        return 0
		    return int(at.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
		times = [time_of(line) for line in lines]
		stamp, events = next((t for t in times if t), int(os.stat(path).st_mtime * 1000)), []
		for line, at in zip(lines, times):
		    stamp = max(stamp, at)
		    events.append({"timestamp": stamp, "message": line})
		json.dump(events[-10_000:], open(out, "w"))
		print(offset + end)
	PYTHON
	)
	if [[ -n $next && $(<"$events") != "[]" ]]; then
		aws_cli logs create-log-stream --log-group-name "$LOG_GROUP" \
			--log-stream-name "$id/boot" >/dev/null 2>&1 # exists after an earlier run
		if aws_cli logs put-log-events --log-group-name "$LOG_GROUP" \
			--log-stream-name "$id/boot" --log-events "file://$events" >/dev/null; then
			printf '%s\n' "$next" >"$file.shipped"
			log "the boot log is in CloudWatch Logs $LOG_GROUP, stream $id/boot"
		else
			log "warning: the boot log did not reach CloudWatch Logs $LOG_GROUP (see above)"
		fi
	fi
	rm -f "$events"
}

main() {
	if [[ $STAGE2_URI == *'{{'* ]]; then
		# unrendered, this copy has no log or die either
		printf '%s: error: this is the unrendered template: launch instances with ./manage.py launch_ec2 --env ENV\n' "$LOG_TAG" >&2
		exit 1
	fi
	: "${BOOTSTRAP_LOG:=/var/log/bootstrap.log}"
	: "${BOOTSTRAP_DIR:=/var/lib/bootstrap}" "${REDEPLOY_EVERY:=1min}"
	open_log
	trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
	trap 'ship_failed_boot $?' EXIT
	log "stage 1 starting"
	install -d -m 0700 "$BOOTSTRAP_DIR"
	exec 9>"$BOOTSTRAP_DIR/lock"
	flock --wait 900 9 || die "another boot run held $BOOTSTRAP_DIR/lock for 15 minutes"

	install_tools
	ensure_docker_running
	install_redeploy_timer

	IMDS_URL=${IMDS_ENDPOINT:-http://169.254.169.254}
	IMDS_URL=${IMDS_URL%/}
	if [[ -n ${IMDS_ENDPOINT:-} ]]; then
		# with the slash: some botocore releases append paths to it without one
		export AWS_EC2_METADATA_SERVICE_ENDPOINT=$IMDS_URL/
	fi
	local region tagged_uri stage2
	if ! IMDS_TOKEN=$(imds_token) || ! region=$(imds placement/region); then
		die "instance metadata at $IMDS_URL does not answer: on EC2, launch with ./manage.py launch_ec2 (IMDSv2, hop limit 2)"
	fi
	if ! tagged_uri=$(imds tags/instance/Bootstrap); then
		die "no Bootstrap tag readable: launch with ./manage.py launch_ec2 (metadata tags on)"
	fi
	if [[ $tagged_uri != "$STAGE2_URI" ]]; then
		die "the Bootstrap tag names $(printf %q "$tagged_uri"), not this environment's stage 2 ($STAGE2_URI): refusing to run it; set the tag back or relaunch with ./manage.py launch_ec2"
	fi
	export AWS_REGION=$region AWS_DEFAULT_REGION=$region
	log "region $region, stage 2 from $tagged_uri"

	# The copy kept from the last run keeps itself current (stage 2's refresh_stage2, with no
	# AWS CLI call); downloaded here when missing, or when its last run never got that far.
	stage2=$BOOTSTRAP_DIR/webserver.sh
	if [[ ! -s $stage2 || -e $stage2.unchecked ]]; then
		if ! aws_cli s3 cp --only-show-errors "$tagged_uri" "$stage2.download"; then
			die "cannot download stage 2 from $tagged_uri: upload it with ./manage.py push_config --env ENV (and check the instance role)"
		fi
		chmod 0700 "$stage2.download"
		mv "$stage2.download" "$stage2"
	fi
	: >"$stage2.unchecked"
	log "running stage 2"
	STAGE2_FILE=$stage2 exec bash "$stage2" 3>&- 4>&-
}

if ! (return 0 2>/dev/null); then
	main "$@"
fi
