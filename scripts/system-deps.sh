#!/usr/bin/env bash
# The Debian packages the tests use: PostgreSQL and Redis (tests start their own on loopback),
# nginx (replicas behind deploy/nginx.conf), Chromium (browser tests, driven by Playwright),
# Node.js and npm (tests/node), cmake and g++ (llama-server, built from the llama.cpp sources as a
# remote engine for the gateway tests). Installs the
# missing ones with apt-get as root, or through sudo when it needs no password; otherwise it
# says what to install and carries on: the tests that need a missing package skip, saying why.
# SYSTEM_DEPS_STRICT=1 (CI) makes a failed install an error instead.
set -uo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)  # a Node.js from elsewhere (nodesource) brings its own
command -v cmake >/dev/null || missing+=(cmake)
command -v g++ >/dev/null || missing+=(g++)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "system-deps: missing Debian packages: ${missing[*]}"
  echo "system-deps: not root and no password-less sudo; install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
  echo "system-deps: carrying on; the tests that need them will skip"
  exit 0
fi

echo "system-deps: installing ${missing[*]} with apt-get (a minute or two) ..."
export DEBIAN_FRONTEND=noninteractive
if "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null; then
  echo "system-deps: installed ${missing[*]}"
  exit 0
fi
echo "system-deps: apt-get failed; install them with: apt-get update && apt-get install -y ${missing[*]}" >&2
if [ "${SYSTEM_DEPS_STRICT:-0}" = 1 ]; then
  exit 1
fi
echo "system-deps: carrying on; the tests that need them will skip" >&2
exit 0
