#!/usr/bin/env bash
# Build the project's images: <project>-base (OS + Python requirements, no code), then
# <project>-dev:TAG or <project>-release:TAG FROM it. Names come from project.env.
#
# Usage: ./build_docker_image.sh [--dry-run] {dev|release} TAG [DOCKER_BUILD_ARG...]
#
#   dev TAG      the development image: Postgres, dev requirements, runserver (deploy/dev/)
#   release TAG  the production image: gunicorn under supervisord (deploy/release/). Built only
#                from a clean tree whose HEAD is the git tag release/TAG, and labelled with
#                that version and commit (OCI labels). Its build context is exactly the files
#                git holds for that commit (git archive), never the working directory, so
#                untracked or ignored files (local settings, keys) cannot reach the image.
#   --dry-run    print the docker commands it would run; pull and build nothing
#   DOCKER_BUILD_ARG...  passed on to every `docker build`, e.g. --network host
#
# .dockerignore is an allow-list (manage.py, project.env, requirements/, deploy/, www/), so
# tests, benchmarks and docs stay out of both images.
#
# The base image is tagged <project>-base:<hash of deploy/base/Dockerfile, requirements/base.txt,
# the base OS image name and project.env's APP_UID and APP_PORT, its build args> (and :latest) and is built only when no image has that hash.
# The base OS image (ARG BASE_OS_IMAGE in deploy/base/Dockerfile) is used if present, else
# pulled; when it can't be pulled (no registry reachable), a stand-in of the same Debian
# release is built from Debian packages (deploy/base/build-os-standin.sh, needs root).
#
# Environment:
#   BASE_OS_IMAGE=IMAGE        another base OS image than the Dockerfile's default
#   REBUILD_BASE=1             rebuild the base image even if one with its hash exists
#                              (e.g. weekly, to take Debian's security updates): without the
#                              build cache (--no-cache), pulling the base OS image afresh
#                              (--pull) unless it is the stand-in built from Debian packages
#   ALLOW_UNRELEASED_BUILD=1   build a release image from any commit or a dirty tree, for
#                              local trials only; it prints a warning and labels the image so.
#                              The image gets the working tree's files as `git status` sees
#                              them: uncommitted edits and new untracked files (it names
#                              them) go in; files git ignores (.gitignore, .git/info/exclude,
#                              a global excludes file) never do
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly ROOT
# The import message deploy/base/build-os-standin.sh gives its images.
readonly STANDIN_COMMENT="stand-in debootstrapped from Debian packages"
DRY_RUN=0

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

# Run a command that changes what docker holds; with --dry-run only say what it would be.
run() {
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would run: $*"
		return 0
	fi
	"$@"
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
	if [[ "$DRY_RUN" == 1 ]]; then
		log "would run: docker pull $image (or build a stand-in from Debian packages if that fails)"
		return
	fi
	local output
	if output="$(docker pull "$image" 2>&1)"; then
		log "pulled $image"
		return
	fi
	log "cannot pull $image: $(tail -n 1 <<<"$output")"
	log "no registry has $image for this machine: using a stand-in built from Debian packages (deploy/base/build-os-standin.sh)"
	PROJECT_NAME="$PROJECT_NAME" "$ROOT/deploy/base/build-os-standin.sh" "$image"
}

# Whether image $1 is the stand-in deploy/base/build-os-standin.sh built (no registry has it).
is_standin() {
	[[ "$(docker image inspect --format '{{.Comment}}' "$1" 2>/dev/null)" == "$STANDIN_COMMENT" ]]
}

# A short hash of everything the base image is built from.
base_hash() {
	local os_image="$1" context="$2"
	{
		echo "$os_image APP_UID=$APP_UID APP_PORT=$APP_PORT"
		cat "$context/deploy/base/Dockerfile" "$context/requirements/base.txt"
	} | sha256sum | cut -c1-12
}

# Build <project>-base:<hash> from context $2 unless it exists; print its name.
build_base() {
	local os_image="$1" context="$2"
	shift 2
	local image
	image="$PROJECT_NAME-base:$(base_hash "$os_image" "$context")"
	local -a fresh=()
	if [[ "${REBUILD_BASE:-0}" == 1 ]]; then
		ensure_base_os_image "$os_image"
		# Without --no-cache docker would reuse the cached apt-get upgrade and pip layers.
		fresh=(--no-cache)
		if is_standin "$os_image"; then
			log "REBUILD_BASE=1: rebuilding $image without the build cache; $os_image is the stand-in built from Debian packages, so it is not pulled"
		else
			fresh+=(--pull)
			log "REBUILD_BASE=1: rebuilding $image without the build cache, pulling $os_image afresh"
		fi
	elif docker image inspect "$image" >/dev/null 2>&1; then
		log "base image $image is up to date"
		echo "$image"
		return
	else
		ensure_base_os_image "$os_image"
		log "building $image"
	fi
	run docker build "${fresh[@]}" \
		--file "$context/deploy/base/Dockerfile" \
		--build-arg "BASE_OS_IMAGE=$os_image" \
		--build-arg "APP_UID=$APP_UID" --build-arg "APP_PORT=$APP_PORT" \
		--tag "$image" --tag "$PROJECT_NAME-base:latest" \
		"$@" "$context" >&2
	echo "$image"
}

# The first few paths of `git status --porcelain` output, on one line.
changed_files() {
	local count
	count=$(printf '%s\n' "$1" | wc -l)
	printf '%s\n' "$1" | cut -c4- | head -n 5 | paste -sd ' ' - | sed 's/ /, /g'
	if ((count > 5)); then
		printf ' and %d more' $((count - 5))
	fi
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
	local why fix
	if [[ -z "$tagged" ]]; then
		why="there is no git tag release/$tag" fix="commit, then git tag release/$tag"
	elif [[ "$tagged" != "$head" ]]; then
		why="git tag release/$tag is ${tagged:0:12}, not HEAD"
		fix="move it to HEAD with git tag -f release/$tag (or check out the tag)"
	else
		why="the working tree has uncommitted changes: $(changed_files "$dirty")"
		fix="commit them (git commit), then move the tag: git tag -f release/$tag"
	fi
	if [[ "${ALLOW_UNRELEASED_BUILD:-0}" != 1 ]]; then
		die "release $tag refused: $why; $fix (or set ALLOW_UNRELEASED_BUILD=1 for a local trial)"
	fi
	log "WARNING: ALLOW_UNRELEASED_BUILD=1: building release $tag although $why; not for deployment"
	echo "$head${dirty:+-dirty}"
}

# The git tree of the working tree as it is now: edits, deletions and untracked files,
# but nothing git ignores. Made on a copy of the index: git's own index stays as it is.
working_tree_tree() {
	local index
	index="$(mktemp "${TMPDIR:-/tmp}/build-index.XXXXXX")"
	cp "$(cd "$ROOT" && realpath "$(git rev-parse --git-path index)")" "$index"
	GIT_INDEX_FILE="$index" git -C "$ROOT" add --all
	GIT_INDEX_FILE="$index" git -C "$ROOT" write-tree
	rm -f "$index"
}

# Name the untracked files a trial takes, so none goes in unnoticed.
name_untracked() {
	local -a untracked
	mapfile -t untracked < <(git -C "$ROOT" ls-files --others --exclude-standard)
	local more=""
	if ((${#untracked[@]} > 5)); then
		more=" and $((${#untracked[@]} - 5)) more"
	fi
	if ((${#untracked[@]} > 0)); then
		log "untracked files included: ${untracked[*]:0:5}$more"
	fi
}

# Fill directory $2 with exactly the files git holds for commit or tree $1.
export_tree() {
	local treeish="$1" dir="$2"
	git -C "$ROOT" archive --format=tar "$treeish" | tar -x -C "$dir"
}

# Where the code comes from (OCI source label): the origin remote without its userinfo, which
# may hold credentials (https://user:token@host/...). Everything up to the host's last '@' goes
# (a password may hold an unencoded '@'); scp-like remotes (user@host:path) lose the user too.
source_url() {
	local url
	url="$(git -C "$ROOT" remote get-url origin 2>/dev/null)" || return 0
	if [[ $url == *://* ]]; then
		sed -E 's|^([A-Za-z][A-Za-z0-9+.-]*://)[^/]*@|\1|' <<<"$url"
	else
		sed -E 's|^[^/:]*@||' <<<"$url"
	fi
}

# Print name and size of each image built.
report() {
	[[ "$DRY_RUN" == 1 ]] && return
	echo "Images built:"
	local image
	for image in "$@"; do
		docker image inspect --format '{{.Size}}' "$image" \
			| awk -v name="$image" '{ printf "  %-40s %7.1f MB\n", name, $1 / 1000 / 1000 }'
	done
}

main() {
	if [[ $# -ge 1 && ("$1" == -h || "$1" == --help) ]]; then
		usage
		exit 0
	fi
	if [[ $# -ge 1 && "$1" == --dry-run ]]; then
		DRY_RUN=1
		shift
	fi
	if [[ $# -lt 2 || ("$1" != dev && "$1" != release) ]]; then
		die "usage: ./build_docker_image.sh [--dry-run] {dev|release} TAG [DOCKER_BUILD_ARG...] (--help for more)"
	fi
	local kind="$1" tag="$2"
	shift 2
	[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] \
		|| die "TAG $tag is not a valid docker tag (letters, digits, _ . -; at most 128)"

	# shellcheck source=/dev/null # project.env: plain KEY=value lines
	source "$ROOT/project.env"
	: "${PROJECT_NAME:?project.env must set PROJECT_NAME}"
	: "${APP_UID:?project.env must set APP_UID}" "${APP_PORT:?project.env must set APP_PORT}"
	local os_image="${BASE_OS_IMAGE:-$(default_base_os_image)}"
	local image="$PROJECT_NAME-$kind:$tag"
	# The dev image's context is the checkout (a developer mounts it over the code anyway).
	local context="$ROOT"
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
		context="$(mktemp -d "${TMPDIR:-/tmp}/release-context.XXXXXX")"
		# shellcheck disable=SC2064 # expand now: the trap must remove this very directory
		trap "rm -rf '$context'" EXIT
		if [[ "$revision" == *-dirty ]]; then
			log "release $tag gets the working tree's files, uncommitted edits and untracked files included; files git ignores stay out"
			name_untracked
			export_tree "$(working_tree_tree)" "$context"
		else
			export_tree "$revision" "$context"
		fi
	fi

	local base
	base="$(build_base "$os_image" "$context" "$@")"
	log "building $image FROM $base"
	run docker build \
		--file "$context/deploy/$kind/Dockerfile" \
		--build-arg "BASE_IMAGE=$base" \
		"${target_args[@]}" \
		--tag "$image" \
		"$@" "$context" >&2
	report "$base" "$image"
}

if ! (return 0 2>/dev/null); then
	main "$@"
fi
