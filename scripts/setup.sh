#!/usr/bin/env bash
# Installs what dialcore needs on Debian 12, idempotently (safe to run every time).
#
#   bash scripts/setup.sh           # runtime: Node >= 20, npm deps, redis-server, rtpengine, sipp, janus, espeak-ng, sox
#   bash scripts/setup.sh --test    # also what the test suites need: chromium (WebRTC browser tests),
#                                   # baresip and linphone-cli (real SIP phones, sip-tests/interop)
#   bash scripts/setup.sh --bench   # also what bench/ compares with: kamailio (the registrar section runs it
#                                   # side by side) and valgrind (bench/registrar-callgrind.ts)
#
# Debian packages are installed with apt-get only when missing, and `apt-get update`
# runs only when something is missing. npm dependencies are installed with `npm ci`
# when node_modules is missing or older than package-lock.json. Must run as root
# when a Debian package is missing (it is a no-op otherwise).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

want_test_tools=0
want_bench_tools=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test_tools=1 ;;
    --bench) want_bench_tools=1 ;;
    *) echo "setup.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { echo "[setup] $*" >&2; }

# command that proves the package works -> Debian package that provides it
declare -a wanted=(
  "redis-server:redis-server"
  "redis-cli:redis-tools"
  "rtpengine:rtpengine-daemon"
  "sipp:sip-tester"
  "janus:janus"   # the AudioBridge plugin mixes 3-way calls (config mixer.janusUrl)
  # dial-in prompts are spoken at start (src/app/dialin/prompts.ts): espeak-ng, sox to 8 kHz WAV
  "espeak-ng:espeak-ng"
  "sox:sox"
)
if [[ $want_test_tools == 1 ]]; then
  wanted+=("chromium:chromium" "baresip:baresip-core" "linphonec:linphone-cli")
fi
if [[ $want_bench_tools == 1 ]]; then
  wanted+=("kamailio:kamailio" "valgrind:valgrind")
fi
if ! command -v node >/dev/null 2>&1; then
  # Debian 12's nodejs is 18; the version check below says what to do then.
  wanted+=("node:nodejs" "npm:npm")
fi

package_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for entry in "${wanted[@]}"; do
  cmd=${entry%%:*}
  pkg=${entry#*:}
  if command -v "$cmd" >/dev/null 2>&1 || package_installed "$pkg"; then
    continue
  fi
  missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
  log "installing Debian packages: ${missing[*]}"
  if [[ $(id -u) != 0 ]]; then
    echo "setup.sh: missing packages (${missing[*]}) and not root: run as root or install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
  # The rtpengine-daemon package starts nothing on Debian without systemd, but if a
  # packaged service did start, it uses /etc/rtpengine and other ports than ours.
  # Likewise janus: its packaged service (systemd) is not what dialcore's tests or start.sh run.
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 20)); then
  echo "setup.sh: Node >= 20 is required, found $(node -v)." >&2
  echo "  Install Node 20 (e.g. the node:20-bookworm image, or a Node 20 package) and re-run." >&2
  exit 1
fi

# npm ci when node_modules is absent or the lock file changed since the last install.
# npm writes node_modules/.package-lock.json on every install; compare against it.
if [[ ! -d node_modules || ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "npm ci"
  npm ci --no-audit --no-fund </dev/null
  touch node_modules/.package-lock.json
fi

# patches/ (patch-package, also the postinstall script): applied again here so that a changed patch or an npm
# that skipped install scripts still ends with patched packages; a patch already applied is left as it is.
log "patch-package"
npx --no-install patch-package >/dev/null

# tsx runs the TypeScript sources; it must work even when npm skipped install scripts.
if ! npx --no-install tsx --version >/dev/null 2>&1; then
  echo "setup.sh: 'npx tsx' does not run after npm ci; see node_modules/esbuild" >&2
  exit 1
fi

# The compiled build (dist/) is what `dialcore` runs: plain node, no TypeScript loader in memory.
log "build (tsc -p tsconfig.build.json)"
npx --no-install tsc -p tsconfig.build.json

log "ready (node $(node -v), redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*' | head -1))"
