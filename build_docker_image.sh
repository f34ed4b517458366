#!/usr/bin/env bash
# Build the project's images: <project>-base (OS + Python requirements, no code), then
# <project>-dev:TAG or <project>-release:TAG FROM it. Names come from project.env.
#
# Usage: ./build_docker_image.sh {dev|release} TAG [DOCKER_BUILD_ARG...]
#
#   dev TAG      the development image: Postgres, dev requirements, runserver (deploy/dev/)
#   release TAG  the production image: gunicorn under supervisord (deploy/release/). Built only
#                from a clean tree whose HEAD is the git tag release/TAG, and labelled with
#                that version and commit (OCI labels).
#   DOCKER_BUILD_ARG...  passed on to every `docker build`, e.g. --network host
#
# The base image is tagged <project>-base:<hash of deploy/base/Dockerfile, requirements/base.txt
# and the base OS image name> (and :latest) and is built only when no image has that hash.
# The base OS image (ARG BASE_OS_IMAGE in deploy/base/Dockerfile) is used if present, else
# pulled; when it can't be pulled (no registry reachable), a stand-in of the same Debian
# release is built from Debian packages (deploy/base/build-os-standin.sh, needs root).
#
# Environment:
#   BASE_OS_IMAGE=IMAGE        another base OS image than the Dockerfile's default
#   REBUILD_BASE=1             rebuild the base image even if one with its hash exists
#                              (e.g. weekly, to take Debian's security updates)
#   ALLOW_UNRELEASED_BUILD=1   build a release image from any commit or a dirty tree, for
#                              local trials only; it prints a warning and labels the image so
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly ROOT

die() {
	echo "build_docker_image.sh: error: $*" >&2
	exit 1
}

log() {
	echo "build_docker_image.sh: $*" >&2
}

usage() {
	sed -n '2,/^set -Eeuo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

# The Dockerfile owns the default base OS image; read it from there.
default_base_os_image() {
	sed -n 's/^ARG BASE_OS_IMAGE=//p' "$ROOT/deploy/base/Dockerfile"
}

# Make sure $1 exists locally: present, pulled, or built from Debian packages.
ensure_base_os_image() {
	local image="$1"
	if docker image inspect "$image" >/dev/null 2>&1; then
		return
	fi
	if docker pull "$image" >/dev/null 2>&1; then
		log "pulled $image"
		return
	fi
	log "cannot pull $image (no registry reachable): using a stand-in built from Debian packages"
	PROJECT_NAME="$PROJECT_NAME" "$ROOT/deploy/base/build-os-standin.sh" "$image"
}

# A short hash of everything the base image is built from.
base_hash() {
	local os_image="$1"
	{
		echo "$os_image"
		cat "$ROOT/deploy/base/Dockerfile" "$ROOT/requirements/base.txt"
	} | sha256sum | cut -c1-12
}

# Build <project>-base:<hash> unless it exists; print its name.
build_base() {
	local os_image="$1"
	shift
	local image
	image="$PROJECT_NAME-base:$(base_hash "$os_image")"
	if [[ "${REBUILD_BASE:-0}" != 1 ]] && docker image inspect "$image" >/dev/null 2>&1; then
		log "base image $image is up to date"
	else
		ensure_base_os_image "$os_image"
		log "building $image"
		docker build \
			--file "$ROOT/deploy/base/Dockerfile" \
			--build-arg "BASE_OS_IMAGE=$os_image" \
			--tag "$image" --tag "$PROJECT_NAME-base:latest" \
			"$@" "$ROOT" >&2
	fi
	echo "$image"
}

# The commit a release is built from; refuses unless HEAD is tag release/$1 and clean.
release_revision() {
	local tag="$1"
	local head tagged dirty
	head="$(git -C "$ROOT" rev-parse HEAD)"
	tagged="$(git -C "$ROOT" rev-parse -q --verify "refs/tags/release/$tag^{commit}" || true)"
	dirty="$(git -C "$ROOT" status --porcelain)"
	if [[ "$tagged" == "$head" && -z "$dirty" ]]; then
		echo "$head"
		return
	fi
	local why="HEAD is not the git tag release/$tag"
	[[ "$tagged" == "$head" ]] && why="the working tree has uncommitted changes"
	if [[ "${ALLOW_UNRELEASED_BUILD:-0}" != 1 ]]; then
		die "release $tag refused: $why (git tag release/$tag on a clean commit, or set ALLOW_UNRELEASED_BUILD=1 for a local trial)"
	fi
	log "WARNING: ALLOW_UNRELEASED_BUILD=1: building release $tag although $why; not for deployment"
	echo "$head${dirty:+-dirty}"
}

# Where the code comes from (OCI source label): the origin remote without any credentials.
source_url() {
	git -C "$ROOT" remote get-url origin 2>/dev/null | sed -E 's#^([a-z+]+://)[^@/]*@#\1#' || true
}

# Print name and size of each image built.
report() {
	echo "Images built:"
	local image
	for image in "$@"; do
		docker image inspect --format '{{.Size}}' "$image" \
			| awk -v name="$image" '{ printf "  %-40s %7.1f MB\n", name, $1 / 1000 / 1000 }'
	done
}

main() {
	if [[ $# -ge 1 && ( "$1" == -h || "$1" == --help ) ]]; then
		usage
		exit 0
	fi
	if [[ $# -lt 2 || ( "$1" != dev && "$1" != release ) ]]; then
		die "usage: ./build_docker_image.sh {dev|release} TAG [DOCKER_BUILD_ARG...] (--help for more)"
	fi
	local kind="$1" tag="$2"
	shift 2
	[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] \
		|| die "TAG $tag is not a valid docker tag (letters, digits, _ . -; at most 128)"

	# shellcheck source=/dev/null # project.env: plain KEY=value lines
	source "$ROOT/project.env"
	: "${PROJECT_NAME:?project.env must set PROJECT_NAME}"
	local os_image="${BASE_OS_IMAGE:-$(default_base_os_image)}"
	local image="$PROJECT_NAME-$kind:$tag"
	local -a target_args=()
	if [[ "$kind" == release ]]; then
		local revision
		revision="$(release_revision "$tag")"
		target_args=(
			--build-arg "VERSION=$tag"
			--build-arg "REVISION=$revision"
			--build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
			--build-arg "SOURCE=$(source_url)"
		)
	fi

	local base
	base="$(build_base "$os_image" "$@")"
	log "building $image FROM $base"
	docker build \
		--file "$ROOT/deploy/$kind/Dockerfile" \
		--build-arg "BASE_IMAGE=$base" \
		"${target_args[@]}" \
		--tag "$image" \
		"$@" "$ROOT" >&2
	report "$base" "$image"
}

if ! (return 0 2>/dev/null); then
	main "$@"
fi
