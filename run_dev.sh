#!/usr/bin/env bash
# Build the dev image (and the base image, when it is missing or stale) and run it on this
# checkout: http://localhost:APP_PORT (project.env), code mounted over /var/www so edits reload at once,
# PostgreSQL's data kept in the host directory across containers.
# Extra arguments go to `docker build` (for example --network host).
set -Eeuo pipefail

main() {
	cd "$(dirname "${BASH_SOURCE[0]}")"
	# shellcheck source=/dev/null # project.env: plain KEY=value lines
	source project.env
	local host_dir="${DEV_HOST_DIR:-$HOME/containers/$PROJECT_NAME}"
	local port="${DEV_PORT:-$APP_PORT}"
	local tag="${DEV_TAG:-latest}"
	local name="${DEV_CONTAINER_NAME:-$PROJECT_NAME-dev}"

	./build_docker_image.sh dev "$tag" "$@"
	mkdir -p "$host_dir"

	# A terminal gets an interactive container (Ctrl-C stops it); CI and scripts get none.
	local tty=()
	if [[ -t 0 && -t 1 ]]; then
		tty=(--interactive --tty)
	fi
	echo "Serving http://localhost:$port/ (data and logs in $host_dir)" >&2
	# Published on loopback only: the dev server is for this machine, not the network.
	exec docker run --rm "${tty[@]}" --name "$name" \
		--publish "127.0.0.1:$port:$APP_PORT" \
		--volume "$PWD:/var/www" --volume "$host_dir:/host" \
		"$PROJECT_NAME-dev:$tag"
}

if ! (return 0 2>/dev/null); then
	main "$@"
fi
