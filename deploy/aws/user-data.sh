#!/usr/bin/env bash
# Stage 1 of a web server's boot, run once as root by cloud-init: launch_ec2 passes this file
# as the instance's user-data (it must stay under EC2's 16 KB limit).
#
# It installs Docker, nginx, the AWS CLI and curl where missing, reads the instance's region
# and its `Bootstrap` tag (the S3 URI of stage 2) from instance metadata with an IMDSv2 token,
# downloads that script and runs it. Everything goes to /var/log/bootstrap.log and to the
# console (cloud-init's output); the first failing command stops the boot with its line.
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
STAGE2_URI='{{bootstrap_uri}}'

log() {
	printf '%s bootstrap: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

on_error() {
	log "error: line $2: '$3' failed with exit status $1"
}

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

# The AWS CLI, pointed at AWS_ENDPOINT_URL when it is set: CLI releases before 2.13 (e.g.
# Debian 12's) ignore that variable.
aws_cli() {
	aws ${AWS_ENDPOINT_URL:+--endpoint-url "$AWS_ENDPOINT_URL"} "$@"
}

# Docker's daemon: started by systemd on an instance, already running elsewhere.
ensure_docker_running() {
	local attempt
	if ! docker info >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
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
	exec > >(tee -a "$BOOTSTRAP_LOG") 2>&1
}

main() {
	: "${BOOTSTRAP_LOG:=/var/log/bootstrap.log}"
	: "${BOOTSTRAP_DIR:=/var/lib/bootstrap}" "${REDEPLOY_EVERY:=1min}"
	open_log
	trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
	if [[ $STAGE2_URI == *'{{'* ]]; then
		die "this is the unrendered template: launch instances with ./manage.py launch_ec2 --env ENV"
	fi
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
	local region bootstrap_uri
	if ! IMDS_TOKEN=$(imds_token) || ! region=$(imds placement/region); then
		die "instance metadata at $IMDS_URL does not answer: on EC2, launch with ./manage.py launch_ec2 (IMDSv2, hop limit 2)"
	fi
	if ! bootstrap_uri=$(imds tags/instance/Bootstrap); then
		die "no Bootstrap tag readable: launch with ./manage.py launch_ec2 (metadata tags on)"
	fi
	if [[ $bootstrap_uri != "$STAGE2_URI" ]]; then
		die "the Bootstrap tag names $(printf %q "$bootstrap_uri"), not this environment's stage 2 ($STAGE2_URI): refusing to run it; set the tag back or relaunch with ./manage.py launch_ec2"
	fi
	export AWS_REGION=$region AWS_DEFAULT_REGION=$region
	log "region $region, stage 2 from $bootstrap_uri"

	if ! aws_cli s3 cp --only-show-errors "$bootstrap_uri" "$BOOTSTRAP_DIR/webserver.sh"; then
		die "cannot download stage 2 from $bootstrap_uri: upload it with ./manage.py push_config --env ENV (and check the instance role)"
	fi
	chmod 0700 "$BOOTSTRAP_DIR/webserver.sh"
	log "running stage 2"
	exec bash "$BOOTSTRAP_DIR/webserver.sh"
}

if ! (return 0 2>/dev/null); then
	main "$@"
fi
