#!/usr/bin/env bash
# Forwarding cost of the dns-sidecar daemon, in throw-away namespaces (root).
#   plugins/dns-sidecar/examples/forward-bench.sh [seconds=3] [window=128] [runs=3]
# HOST netns: bridge br0 10.78.0.1/16 (the daemon listens there), veth to
# UPSTREAM netns 10.79.0.2 (examples/upstream: a fake upstream server);
# CLIENT netns 10.78.0.2 runs examples/load. One container is registered
# through the plugin (ADD). Measured, interleaved per run: a local name
# (the daemon's own answer), cached forwarded names (64 names under
# example.com, asked once before timing) and uncached forwarded names
# (64 names under example.org: NXDOMAIN without SOA, never cached, so every
# query goes upstream). DNS_SIDECAR_BIN=<path> measures another build of
# the daemon (e.g. a copy from before a change).
set -euo pipefail
cd "$(dirname "$0")/../../.."
SECS=${1:-3}
WINDOW=${2:-128}
RUNS=${3:-3}
cargo build --release -q -p dns-sidecar --bins --examples
BIN=${DNS_SIDECAR_BIN:-$PWD/target/release/dns-sidecar}
LOAD=$PWD/target/release/examples/load
UP=$PWD/target/release/examples/upstream
H=cni-dns-fwd-h-$$
C=cni-dns-fwd-c-$$
U=cni-dns-fwd-u-$$
NET=fwdbench-$$
RUN=$(mktemp -d)
UPPID=""
cleanup() {
  [ -n "$UPPID" ] && kill "$UPPID" 2>/dev/null || true
  if [ -f "$RUN/$NET/pid" ]; then kill "$(cat "$RUN/$NET/pid")" 2>/dev/null || true; fi
  for ns in "$C" "$U" "$H"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$RUN"
}
trap cleanup EXIT
for ns in "$H" "$C" "$U"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$H" link add name br0 type bridge
ip -n "$H" addr add 10.78.0.1/16 dev br0
ip -n "$H" link set br0 up
ip -n "$H" link add name vc type veth peer name eth0 netns "$C"
ip -n "$H" link set vc master br0 up
ip -n "$C" addr add 10.78.0.2/16 dev eth0
ip -n "$C" link set eth0 up
ip -n "$H" link add name vu type veth peer name eth0 netns "$U"
ip -n "$H" addr add 10.79.0.1/24 dev vu
ip -n "$H" link set vu up
ip -n "$U" addr add 10.79.0.2/24 dev eth0
ip -n "$U" link set eth0 up
echo "nameserver 10.79.0.2" > "$RUN/resolv.conf"
ip netns exec "$U" "$UP" 10.79.0.2 &
UPPID=$!
conf=$(printf '{"cniVersion":"1.0.0","name":"%s","type":"dnsname","domainName":"dns.podman","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"br0"},{"name":"eth0","sandbox":"/x"}],"ips":[{"address":"10.78.0.2/16","gateway":"10.78.0.1","interface":1}]}}' "$NET")
echo "$conf" | CNI_COMMAND=ADD CNI_CONTAINERID=c0000000001 CNI_NETNS=/run/netns/$C CNI_IFNAME=eth0 CNI_PATH=/x \
  CNI_ARGS="K8S_POD_NAME=web" DNS_SIDECAR_RUN_DIR=$RUN DNS_SIDECAR_RESOLV_CONF=$RUN/resolv.conf \
  ip netns exec "$H" "$BIN" >/dev/null
cached=$(for j in $(seq 0 63); do printf 'www%d.example.com,' "$j"; done)
uncached=$(for j in $(seq 0 63); do printf 'nope%d.example.org,' "$j"; done)
ip netns exec "$C" "$LOAD" 10.78.0.1 "${cached%,}" A 0.5 "$WINDOW" >/dev/null
PID=$(cat "$RUN/$NET/pid")
HZ=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; } # the daemon's user + system ticks
# Besides answers/s (which other load on the machine moves), the daemon's
# CPU time per answer: steadier on a busy machine.
for r in $(seq 1 "$RUNS"); do
  for q in "local web" "cached-forwarded ${cached%,}" "uncached-forwarded ${uncached%,}"; do
    set -- $q
    printf 'run %d %-20s ' "$r" "$1"
    t0=$(cpu)
    out=$(ip netns exec "$C" "$LOAD" 10.78.0.1 "$2" A "$SECS" "$WINDOW")
    t1=$(cpu)
    answers=$(echo "$out" | sed -E 's/.*\(([0-9]+) answers.*/\1/')
    echo "$out; daemon cpu $(awk -v t="$((t1 - t0))" -v hz="$HZ" -v n="$answers" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }') us/answer"
  done
done
echo "daemon: $(grep VmRSS /proc/"$PID"/status)"
