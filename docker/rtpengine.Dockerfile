# rtpengine from Debian 12's rtpengine-daemon package, userspace only (no kernel module).
# Build from the repository root:  docker build -f docker/rtpengine.Dockerfile -t dialcore-rtpengine .
FROM debian:12

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rtpengine-daemon \
 && rm -rf /var/lib/apt/lists/*

# Addresses and ports come from the environment (see docker/compose.yml).
ENV RTPENGINE_INTERFACE=127.0.0.1 \
    RTPENGINE_NG=127.0.0.1:22222 \
    RTPENGINE_PORT_MIN=23000 \
    RTPENGINE_PORT_MAX=32000 \
    RTPENGINE_DTMF_LOG_DEST=127.0.0.1:22230

# --config-file=none: ignore /etc/rtpengine/rtpengine.conf; --table=-1: no kernel forwarding.
CMD exec rtpengine --config-file=none --table=-1 \
      --interface="$RTPENGINE_INTERFACE" \
      --listen-ng="$RTPENGINE_NG" \
      --port-min="$RTPENGINE_PORT_MIN" --port-max="$RTPENGINE_PORT_MAX" \
      --dtmf-log-dest="$RTPENGINE_DTMF_LOG_DEST" \
      --foreground --log-stderr
