#!/usr/bin/env bash
# The project's test command: lint, then every test tier (fast, AWS emulator, Docker).
# It keeps .venv in step with requirements/dev.txt. System needs (Docker engine, PostgreSQL
# server binaries, shellcheck, debootstrap, ...) are listed and installed by .ci/run.
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

# (Re)build .venv when requirements changed since it was last built.
ensure_venv() {
	local stamp=.venv/.requirements.sha256 wanted
	wanted="$(cat requirements/*.txt | sha256sum)"
	if [[ -x .venv/bin/python && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
		return
	fi
	echo "Installing requirements/dev.txt into .venv" >&2
	python3 -m venv .venv
	.venv/bin/pip install --quiet --upgrade pip
	.venv/bin/pip install --quiet -r requirements/dev.txt
	echo "$wanted" >"$stamp"
}

main() {
	ensure_venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	exec .venv/bin/pytest "$@"
}

if ! (return 0 2>/dev/null); then
	main "$@"
fi
