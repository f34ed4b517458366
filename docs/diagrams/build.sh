#!/usr/bin/env bash
# Render every diagram source (*.dot beside this script) to SVG and PNG with Debian's graphviz.
#
# Usage: docs/diagrams/build.sh [OUTPUT_DIR]
#   OUTPUT_DIR defaults to this directory, where the rendered images are committed;
#   the tests render into a temporary directory instead.
set -Eeuo pipefail

DIAGRAM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FORMATS=(svg png)

# Stop with one line when graphviz is missing, instead of a "command not found" per file.
require_dot() {
	if ! command -v dot >/dev/null 2>&1; then
		echo "error: graphviz's dot not found; install it (apt-get install graphviz)" >&2
		exit 1
	fi
}

# render SOURCE OUTPUT_DIR: write OUTPUT_DIR/<name>.<format> for each format.
render() {
	local source="$1" output_dir="$2" name format
	name="$(basename "$source" .dot)"
	for format in "${FORMATS[@]}"; do
		dot -T"$format" "$source" -o "$output_dir/$name.$format"
	done
	(IFS=,; echo "rendered $output_dir/$name.{${FORMATS[*]}}")
}

main() {
	local output_dir="${1:-$DIAGRAM_DIR}" source
	local sources=("$DIAGRAM_DIR"/*.dot)
	require_dot
	if [[ ! -e "${sources[0]}" ]]; then
		echo "error: no *.dot sources in $DIAGRAM_DIR" >&2
		exit 1
	fi
	mkdir -p "$output_dir"
	for source in "${sources[@]}"; do
		render "$source" "$output_dir"
	done
}

if ! (return 0 2>/dev/null); then
	main "$@"
fi
