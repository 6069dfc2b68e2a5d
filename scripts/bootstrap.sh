#!/usr/bin/env bash
# Prepare this checkout for development and tests, on a fresh Debian machine or an old one.
# Idempotent: a second run only checks. Quiet on success; on failure prints the failing
# step's output and exits non-zero. Needs no terminal (CI=true, stdin closed).
#
#   1. .venv/ in the repo (python3 -m venv) with `pip install -e .[test]`
#   2. Debian packages the tests use (redis-server, prometheus+promtool) via apt-get, as root
#   3. Apache Kafka's jars from Maven Central into ${STREAM_APP_CACHE:-~/.cache/stream_app}
#
# Env: PYTHON (interpreter for the venv, default python3), BOOTSTRAP_VERBOSE=1 (show output).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python3}
VENV="$REPO/.venv"
DEBIAN_PACKAGES=(redis-server prometheus)
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

LOG=$(mktemp -t stream-app-bootstrap.XXXXXX)
trap 'rm -f "$LOG"' EXIT

# run "description" cmd...: output to $LOG; shown (with the step) only when the step fails.
run() {
  local what=$1
  shift
  if [[ ${BOOTSTRAP_VERBOSE:-0} == 1 ]]; then
    echo "bootstrap: $what" >&2
    if "$@" </dev/null; then return 0; fi
  else
    if "$@" </dev/null >"$LOG" 2>&1; then return 0; fi
    cat "$LOG" >&2
  fi
  echo "bootstrap: FAILED: $what ($*)" >&2
  exit 1
}

as_root() {
  if [[ $(id -u) == 0 ]]; then "$@"; else sudo -n "$@"; fi
}

# --- 1. Python virtualenv --------------------------------------------------
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "bootstrap: FAILED: $PYTHON is $("$PYTHON" -V 2>&1); Python >= 3.11 is required" >&2
  exit 1
}

if [[ ! -x $VENV/bin/python ]]; then
  if ! "$PYTHON" -m venv "$VENV" </dev/null >"$LOG" 2>&1; then
    # Debian's own python3 ships venv/ensurepip separately.
    rm -rf "$VENV"
    run "apt-get update" as_root apt-get -q -y -o DPkg::Lock::Timeout=300 update
    run "apt-get install python3-venv" as_root apt-get -q -y -o DPkg::Lock::Timeout=300 install python3-venv
    run "create $VENV" "$PYTHON" -m venv "$VENV"
  fi
fi

# Reinstall only when the project metadata changed since the last successful install.
STAMP="$VENV/.bootstrap-stamp"
WANT=$(sha256sum <pyproject.toml | cut -d' ' -f1)
if [[ ! -f $STAMP || $(cat "$STAMP") != "$WANT" ]] \
  || ! "$VENV/bin/python" -c 'import stream_app, pytest' >/dev/null 2>&1; then
  run "pip install -e .[test]" "$VENV/bin/python" -m pip install -q -e ".[test]"
  echo "$WANT" >"$STAMP"
fi

# --- 2 + 3. Debian packages and Kafka jars ---------------------------------
# stream_app.stack knows each package's binary, installs only what is missing (apt-get,
# noninteractive, under a lock; explains what to run when not root), then fetches the
# Kafka jars with Maven into the cache unless they are there already.
run "Debian packages (${DEBIAN_PACKAGES[*]}) and Kafka jars" \
  "$VENV/bin/python" -m stream_app.stack ensure -q --packages "${DEBIAN_PACKAGES[@]}"
