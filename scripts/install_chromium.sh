#!/usr/bin/env bash
# Headless Chromium (Debian package `chromium`) for the tests that drive a browser: the one that opens the HTML
# reports and checks that the plots rendered, and the one that uses the rubric inspector in a real JupyterLab
# (Playwright on this binary). Idempotent: does nothing when a chromium binary is already on PATH.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null 2>&1; then
    echo "chromium: $(command -v "$name")"
    exit 0
  fi
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "chromium is missing and there is no root or sudo to apt-get it" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "chromium: $(command -v chromium)"
