#!/usr/bin/env bash
# Debian's chromium for the dashboard's browser test (tests/test_dashboard_browser.py); Playwright's own browser
# download does not work on this project's machines. Installs it when missing; says so once when it cannot.
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "make test: apt-get is not available, so Debian's chromium cannot be installed: the dashboard's browser test will fail (install chromium by hand)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo -n"; fi
echo "make test: installing Debian's chromium for the dashboard's browser test" >&2
{ $SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium >/dev/null 2>&1; }; } \
  || echo "make test: apt-get could not install chromium: the dashboard's browser test will fail (install chromium by hand)" >&2
exit 0
