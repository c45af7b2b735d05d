#!/usr/bin/env bash
# The web UI's browser tests drive Debian's Chromium at /usr/bin/chromium (never a downloaded browser:
# no `playwright install`). Installs the `chromium` package when it is missing; does nothing otherwise.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
echo "ensure-chromium: $CHROMIUM is missing; installing Debian's chromium package" >&2
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo -n)
else
  echo "ensure-chromium: not root and no sudo: install it with 'apt-get install chromium' as root" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: no apt-get here: install Chromium so that $CHROMIUM exists" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium; }; then
  echo "ensure-chromium: installing the chromium package failed (see above)" >&2
  exit 1
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "ensure-chromium: the chromium package is installed but $CHROMIUM does not exist" >&2
  exit 1
fi
"$CHROMIUM" --version >&2 || true
