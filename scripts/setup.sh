#!/usr/bin/env bash
# Create .venv with the pinned dependencies and deepscreen itself. Safe to run again (fast when up to date).
set -euo pipefail
cd "$(dirname "$0")/.."

# OpenCV and MediaPipe load libGL/libglib at import; slim Debian images lack them.
if ! ldconfig -p 2>/dev/null | grep -q "libGL.so.1" || ! ldconfig -p 2>/dev/null | grep -q "libglib-2.0.so.0"; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq libgl1 libglib2.0-0 >/dev/null
  else
    echo "setup: libGL/libglib missing; install libgl1 and libglib2.0-0" >&2
  fi
fi

# pyworld (the WORLD vocoder) ships as source only: pip compiles it, which needs a C++ compiler.
if ! command -v g++ >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq g++ >/dev/null
  else
    echo "setup: g++ missing (needed to build pyworld); install g++" >&2
  fi
fi

# The service's review-page tests drive Debian's headless Chromium through its chromedriver (no browser downloads).
if ! command -v chromedriver >/dev/null || ! { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "setup: chromium/chromedriver missing (review-page tests will skip); install chromium chromium-driver" >&2
  fi
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# pip, not uv/poetry: only pip sees the local CPU build of torch 2.13.0.
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
