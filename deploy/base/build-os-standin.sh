#!/usr/bin/env bash
# Build a stand-in for an official Debian slim image (e.g. debian:trixie-slim) from Debian
# packages, for machines that reach Debian's archive but no image registry (air-gapped
# builds). build_docker_image.sh runs it only when the image can neither be found locally
# nor pulled.
#
# The root filesystem is debootstrapped (--variant=minbase), trimmed the way the official
# slim image is (no .deb cache, no apt lists, no docs/man/locales), and cached as a tarball
# under ${XDG_CACHE_HOME:-$HOME/.cache}/<project>/ so later runs only `docker import` it.
# The host's CA bundle goes in at a path of its own with PIP_CERT pointing at it, so pip can
# verify the package index through a TLS-inspecting proxy; it is not put under
# /etc/ssl/certs, which installing Debian's ca-certificates package regenerates.
#
# Usage: deploy/base/build-os-standin.sh IMAGE [NAME]   (needs root: debootstrap does)
#        tags the stand-in for IMAGE as IMAGE, or as NAME when given
# Env:   DEBIAN_MIRROR   default http://deb.debian.org/debian
#        HOST_CA_BUNDLE  default /etc/ssl/certs/ca-certificates.crt
#        STANDIN_CACHE_DIR  default ${XDG_CACHE_HOME:-$HOME/.cache}/$PROJECT_NAME (project.env)
set -Eeuo pipefail

readonly STANDIN_CA_PATH=/usr/local/share/ca-certificates-host/bundle.crt

die() {
	echo "build-os-standin: error: $*" >&2
	exit 1
}

log() {
	echo "build-os-standin: $*" >&2
}

# "debian:trixie-slim" -> "trixie"; only Debian slim images have a faithful stand-in.
suite_of() {
	local image="$1"
	if [[ "$image" =~ ^(docker\.io/)?(library/)?debian:([a-z]+)-slim$ ]]; then
		echo "${BASH_REMATCH[3]}"
	else
		die "no stand-in for $image: only debian:<release>-slim images can be built from Debian packages"
	fi
}

# dpkg and apt settings the official slim image ships, so packages installed later are
# trimmed the same way (docs, man pages, locales) and apt keeps no cache.
write_slim_config() {
	local root="$1"
	cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<-'CFG'
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/man/*
		path-exclude /usr/share/groff/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/lintian/*
		path-exclude /usr/share/linda/*
		path-exclude /usr/share/locale/*
		path-include /usr/share/locale/locale.alias
	CFG
	cat >"$root/etc/apt/apt.conf.d/docker-clean" <<-'CFG'
		DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		Dir::Cache::pkgcache "";
		Dir::Cache::srcpkgcache "";
	CFG
	echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
	echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
}

# Same sources as the official image: the release, its updates and its security archive.
write_sources() {
	local root="$1" suite="$2" mirror="$3"
	rm -f "$root/etc/apt/sources.list"
	cat >"$root/etc/apt/sources.list.d/debian.sources" <<-SOURCES
		Types: deb
		URIs: $mirror
		Suites: $suite $suite-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: ${mirror%/debian}/debian-security
		Suites: $suite-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	SOURCES
}

# Remove what the slim image does not carry: files its dpkg excludes name, caches, logs.
trim_like_slim() {
	local root="$1"
	find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
	find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
	rm -rf "$root"/usr/share/{man,groff,info,lintian,linda}/*
	find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/archives/partial/* \
		"$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/var/log/* \
		"$root"/var/cache/debconf/*-old "$root"/tmp/* "$root"/root/.bash_history
	mkdir -p "$root/var/lib/apt/lists/partial"
	# Like the official image: no machine id of this build host, one generated per container.
	: >"$root/etc/machine-id"
	# debootstrap copies the build host's resolver and hostname; a container gets its own.
	rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
}

# debootstrap SUITE into a temporary root, trim it, and write the tarball to $tarball.
build_rootfs() {
	local suite="$1" mirror="$2" tarball="$3"
	local root
	root="$(mktemp -d "${TMPDIR:-/tmp}/os-standin.XXXXXX")"
	# shellcheck disable=SC2064 # expand now: the trap must remove this very directory
	trap "rm -rf '$root'" EXIT
	log "debootstrap --variant=minbase $suite from $mirror (a few minutes, cached afterwards)"
	debootstrap --variant=minbase "$suite" "$root" "$mirror" >&2 \
		|| die "debootstrap $suite failed (is $mirror reachable?)"
	write_slim_config "$root"
	write_sources "$root" "$suite" "$mirror"
	trim_like_slim "$root"
	mkdir -p "$(dirname "$tarball")"
	tar --numeric-owner --xattrs -C "$root" -cf "$tarball.partial" .
	mv "$tarball.partial" "$tarball"
	rm -rf "$root"
	trap - EXIT
}

# Import the cached rootfs plus the host CA bundle as IMAGE.
import_image() {
	local image="$1" tarball="$2" ca_bundle="$3"
	local work
	work="$(mktemp -d "${TMPDIR:-/tmp}/os-standin-import.XXXXXX")"
	# shellcheck disable=SC2064 # expand now: the trap must remove this very directory
	trap "rm -rf '$work'" EXIT
	cp "$tarball" "$work/rootfs.tar"
	mkdir -p "$work/ca/$(dirname "$STANDIN_CA_PATH")"
	cp "$ca_bundle" "$work/ca/$STANDIN_CA_PATH"
	chmod 0644 "$work/ca/$STANDIN_CA_PATH"
	tar --numeric-owner --owner=0 --group=0 -C "$work/ca" -rf "$work/rootfs.tar" \
		"${STANDIN_CA_PATH#/}"
	docker import \
		--change "ENV PIP_CERT=$STANDIN_CA_PATH" \
		--change 'CMD ["bash"]' \
		--message "stand-in debootstrapped from Debian packages" \
		"$work/rootfs.tar" "$image" >/dev/null
	rm -rf "$work"
	trap - EXIT
}

main() {
	if [[ $# -ge 1 && ("$1" == -h || "$1" == --help) ]]; then
		sed -n '2,/^set -Eeuo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
		exit 0
	fi
	[[ $# -ge 1 && $# -le 2 ]] || die "usage: build-os-standin.sh IMAGE [NAME] (--help for more)"
	local image="$1" name="${2:-$1}"
	local suite mirror ca_bundle cache_dir tarball
	suite="$(suite_of "$image")"
	mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
	ca_bundle="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
	if [[ -z "${STANDIN_CACHE_DIR:-}" ]]; then
		# shellcheck source=/dev/null # project.env: plain KEY=value lines
		source "$(dirname "${BASH_SOURCE[0]}")/../../project.env"
	fi
	cache_dir="${STANDIN_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/$PROJECT_NAME}"
	tarball="$cache_dir/debian-$suite-slim-$(dpkg --print-architecture 2>/dev/null || uname -m).tar"

	[[ -r "$ca_bundle" ]] || die "host CA bundle $ca_bundle not readable; set HOST_CA_BUNDLE"
	if [[ -s "$tarball" ]]; then
		log "reusing cached root filesystem $tarball"
	else
		[[ "$(id -u)" -eq 0 ]] || die "debootstrap needs root: run as root, or pull $image"
		command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install debootstrap"
		build_rootfs "$suite" "$mirror" "$tarball"
	fi
	import_image "$name" "$tarball" "$ca_bundle"
	log "tagged $name (stand-in for $image built from Debian $suite packages, PIP_CERT=$STANDIN_CA_PATH)"
}

if ! (return 0 2>/dev/null); then
	main "$@"
fi
