# The 3-way mixer: Janus from Debian 12's `janus` package with only the AudioBridge plugin and the
# plain-HTTP API loaded (no WebSockets, no admin API, no other plugin, transport, event handler
# or logger). Build from the repository root:  docker build -f docker/janus.Dockerfile -t dialcore-janus .
FROM debian:12

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends janus \
 && rm -rf /var/lib/apt/lists/*

# Addresses and ports come from the environment (see docker/compose.yml).
ENV JANUS_HTTP_IP=127.0.0.1 \
    JANUS_HTTP_PORT=8288 \
    JANUS_RTP_IP=127.0.0.1 \
    JANUS_RTP_PORT_MIN=32001 \
    JANUS_RTP_PORT_MAX=33000

# Nothing of /etc/janus is read: the configuration folder and the plugin/transport folders
# (links to the two libraries only) are generated at start, as sip-tests/harness/janus.ts does.
CMD set -e; lib=/usr/lib/x86_64-linux-gnu/janus; conf=/run/janus/conf; \
    mkdir -p $conf /run/janus/plugins /run/janus/transports /run/janus/none; \
    ln -sf $lib/plugins/libjanus_audiobridge.so /run/janus/plugins/; \
    ln -sf $lib/transports/libjanus_http.so /run/janus/transports/; \
    printf 'general: {\n  configs_folder = "%s"\n  plugins_folder = "/run/janus/plugins"\n  transports_folder = "/run/janus/transports"\n  events_folder = "/run/janus/none"\n  loggers_folder = "/run/janus/none"\n  debug_level = 4\n  session_timeout = 60\n}\nmedia: {\n}\nnat: {\n  nice_debug = false\n}\n' "$conf" > $conf/janus.jcfg; \
    printf 'general: {\n  json = "plain"\n  base_path = "/janus"\n  http = true\n  port = %s\n  ip = "%s"\n  https = false\n}\nadmin: {\n  admin_http = false\n  admin_https = false\n}\n' "$JANUS_HTTP_PORT" "$JANUS_HTTP_IP" > $conf/janus.transport.http.jcfg; \
    printf 'general: {\n  rtp_port_range = "%s-%s"\n  local_ip = "%s"\n}\n' "$JANUS_RTP_PORT_MIN" "$JANUS_RTP_PORT_MAX" "$JANUS_RTP_IP" > $conf/janus.plugin.audiobridge.jcfg; \
    exec janus --config $conf/janus.jcfg --configs-folder $conf --disable-colors --interface "$JANUS_RTP_IP"
