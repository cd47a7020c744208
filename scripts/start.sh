#!/usr/bin/env bash
# Starts dialcore with everything it needs, from a fresh clone on Debian 12 (as root):
#
#   bash scripts/start.sh [dialcore start options...]
#
# 1. scripts/setup.sh: Debian packages (redis-server, rtpengine-daemon, sip-tester, janus)
#    and npm dependencies, each only when missing.
# 2. Redis on 127.0.0.1:${DIALCORE_REDIS_PORT:-6379}, unless one already answers there.
# 3. rtpengine (userspace, kernel table -1) on 127.0.0.1, ng control on
#    ${DIALCORE_RTPENGINE_NG_PORT:-22222}/udp, media ports
#    ${DIALCORE_RTP_PORT_MIN:-23000}-${DIALCORE_RTP_PORT_MAX:-32000}, DTMF events sent
#    as UDP JSON to 127.0.0.1:${DIALCORE_DTMF_LOG_PORT:-22230}, call recordings (pcap) under
#    .run/recordings (dialcore writes their WAVs to .run/recordings/wav); unless ours already runs.
# 4. Janus (the 3-way mixer) with only its AudioBridge plugin and its HTTP API on
#    127.0.0.1:${DIALCORE_JANUS_HTTP_PORT:-8288}/janus (no admin API), plain-RTP participants on
#    127.0.0.1:${DIALCORE_JANUS_RTP_MIN:-22400}-${DIALCORE_JANUS_RTP_MAX:-22999}; configuration
#    generated into .run/janus (nothing of /etc/janus is read); unless DIALCORE_JANUS_URL is set.
# 5. node bin/dialcore.js start "$@" with DIALCORE_REDIS, DIALCORE_RTPENGINE, DIALCORE_JANUS_URL and DIALCORE_DTMF_EVENTS in its
#    environment, and an admin API token: DIALCORE_ADMIN_TOKEN if set, else one generated
#    once into .run/admin-token (mode 600) and reused.
# Redis, rtpengine and Janus started here are stopped when dialcore exits (Ctrl-C, SIGTERM).
# Their logs and pid files are in .run/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

bash scripts/setup.sh

run_dir="$root/.run"
mkdir -p "$run_dir"

redis_port=${DIALCORE_REDIS_PORT:-6379}
ng_port=${DIALCORE_RTPENGINE_NG_PORT:-22222}
rtp_min=${DIALCORE_RTP_PORT_MIN:-23000}
rtp_max=${DIALCORE_RTP_PORT_MAX:-32000}
dtmf_port=${DIALCORE_DTMF_LOG_PORT:-22230}

log() { echo "[start] $*" >&2; }

started_pids=()
dialcore_pid=

stop_started() {
  local pid
  if [[ -n $dialcore_pid ]] && kill -0 "$dialcore_pid" 2>/dev/null; then
    kill -TERM "$dialcore_pid" 2>/dev/null || true
    wait "$dialcore_pid" 2>/dev/null || true
  fi
  for pid in "${started_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${started_pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}
trap stop_started EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_until() { # wait_until <tries of 0.1 s> <command...>
  local tries=$1; shift
  for _ in $(seq "$tries"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}

redis_answers() { [[ $(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null) == PONG ]]; }

if redis_answers; then
  log "Redis already answers on 127.0.0.1:$redis_port; using it"
else
  log "starting Redis on 127.0.0.1:$redis_port (data in $run_dir/redis)"
  mkdir -p "$run_dir/redis"
  redis-server --bind 127.0.0.1 --port "$redis_port" --protected-mode yes \
    --dir "$run_dir/redis" --daemonize no --logfile "$run_dir/redis.log" \
    </dev/null &
  started_pids+=($!)
  if ! wait_until 100 redis_answers; then
    echo "start.sh: Redis did not answer PING; see $run_dir/redis.log" >&2
    exit 1
  fi
fi

rtpengine_pidfile="$run_dir/rtpengine.pid"
rtpengine_running() { [[ -f $rtpengine_pidfile ]] && kill -0 "$(cat "$rtpengine_pidfile")" 2>/dev/null; }

if rtpengine_running; then
  log "rtpengine already running (pid $(cat "$rtpengine_pidfile")); using it"
else
  log "starting rtpengine: ng 127.0.0.1:$ng_port, media 127.0.0.1:$rtp_min-$rtp_max"
  rm -f "$rtpengine_pidfile"
  rtpengine --config-file=none --table=-1 --interface=127.0.0.1 \
    --listen-ng="127.0.0.1:$ng_port" \
    --port-min="$rtp_min" --port-max="$rtp_max" \
    --dtmf-log-dest="127.0.0.1:$dtmf_port" \
    --recording-dir="$run_dir/recordings" --recording-method=pcap \
    --foreground --log-stderr --pidfile="$rtpengine_pidfile" \
    </dev/null 2>"$run_dir/rtpengine.log" &
  rtpengine_pid=$!
  started_pids+=("$rtpengine_pid")
  if ! wait_until 50 test -s "$rtpengine_pidfile" || ! kill -0 "$rtpengine_pid" 2>/dev/null; then
    echo "start.sh: rtpengine did not start; see $run_dir/rtpengine.log" >&2
    exit 1
  fi
fi

if [[ -z ${DIALCORE_JANUS_URL:-} ]]; then
  janus_port=${DIALCORE_JANUS_HTTP_PORT:-8288}
  janus_dir="$run_dir/janus"
  janus_lib=/usr/lib/x86_64-linux-gnu/janus
  rm -rf "$janus_dir" && mkdir -p "$janus_dir/conf" "$janus_dir/plugins" "$janus_dir/transports" "$janus_dir/none"
  ln -s "$janus_lib/plugins/libjanus_audiobridge.so" "$janus_dir/plugins/"
  ln -s "$janus_lib/transports/libjanus_http.so" "$janus_dir/transports/"
  cat >"$janus_dir/conf/janus.jcfg" <<JCFG
general: {
  configs_folder = "$janus_dir/conf"
  plugins_folder = "$janus_dir/plugins"
  transports_folder = "$janus_dir/transports"
  events_folder = "$janus_dir/none"
  loggers_folder = "$janus_dir/none"
  debug_level = 4
}
JCFG
  cat >"$janus_dir/conf/janus.transport.http.jcfg" <<JCFG
general: { json = "plain", base_path = "/janus", http = true, port = $janus_port, ip = "127.0.0.1", https = false }
admin: { admin_http = false, admin_https = false }
JCFG
  cat >"$janus_dir/conf/janus.plugin.audiobridge.jcfg" <<JCFG
general: { rtp_port_range = "${DIALCORE_JANUS_RTP_MIN:-22400}-${DIALCORE_JANUS_RTP_MAX:-22999}", local_ip = "127.0.0.1" }
JCFG
  log "starting janus: HTTP API http://127.0.0.1:$janus_port/janus (AudioBridge only)"
  janus --config "$janus_dir/conf/janus.jcfg" --configs-folder "$janus_dir/conf" --disable-colors \
    --interface 127.0.0.1 --ice-enforce-list lo </dev/null >"$run_dir/janus.log" 2>&1 &
  janus_pid=$!
  started_pids+=("$janus_pid")
  janus_answers() { node -e 'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "http://127.0.0.1:$janus_port/janus/info"; }
  if ! wait_until 100 janus_answers || ! kill -0 "$janus_pid" 2>/dev/null; then
    echo "start.sh: janus did not start; see $run_dir/janus.log" >&2
    exit 1
  fi
  export DIALCORE_JANUS_URL="http://127.0.0.1:$janus_port/janus"
fi

if [[ ! -f bin/dialcore.js ]]; then
  echo "start.sh: bin/dialcore.js not found" >&2
  exit 1
fi

export DIALCORE_REDIS=${DIALCORE_REDIS:-redis://127.0.0.1:$redis_port}
export DIALCORE_RTPENGINE=${DIALCORE_RTPENGINE:-127.0.0.1:$ng_port}
export DIALCORE_RECORDING_DIR=${DIALCORE_RECORDING_DIR:-$run_dir/recordings}
# dial-in DTMF: dialcore receives what rtpengine sends to its --dtmf-log-dest
export DIALCORE_DTMF_EVENTS=${DIALCORE_DTMF_EVENTS:-127.0.0.1:$dtmf_port}
if [[ -z ${DIALCORE_ADMIN_TOKEN:-} ]]; then
  if [[ ! -s .run/admin-token ]]; then
    (umask 077 && node -e 'process.stdout.write(require("crypto").randomBytes(24).toString("hex"))' > .run/admin-token)
  fi
  DIALCORE_ADMIN_TOKEN=$(cat .run/admin-token)
  export DIALCORE_ADMIN_TOKEN
  echo "start.sh: admin API token in .run/admin-token" >&2
fi

log "starting dialcore"
# Not exec: this shell stays to stop Redis, rtpengine and Janus when dialcore exits.
node bin/dialcore.js start "$@" &
dialcore_pid=$!
set +e
wait "$dialcore_pid"
status=$?
# A signal to this shell interrupts wait; the INT/TERM trap exits and EXIT stops dialcore.
dialcore_pid=
exit "$status"
