#!/usr/bin/env bash
# Benchmark the dns-sidecar daemon in throw-away network namespaces (root).
#   plugins/dns-sidecar/examples/bench.sh [names=1000] [seconds=5] [window=128]
# Builds: HOST netns with bridge br0 10.77.0.1/24; client netns on it at
# 10.77.0.2; registers <names> containers through the plugin (ADD), then runs
# the load example from the client for A, AAAA, PTR and NXDOMAIN.
set -euo pipefail
cd "$(dirname "$0")/../../.."
NAMES=${1:-1000}
SECS=${2:-5}
WINDOW=${3:-128}
cargo build --release -q -p dns-sidecar --bins --examples
BIN=$PWD/target/release/dns-sidecar
LOAD=$PWD/target/release/examples/load
H=cni-dns-bench-h-$$
C=cni-dns-bench-c-$$
NET=bench-$$
RUN=$(mktemp -d)
cleanup() {
  for p in $(pgrep -f "dns-sidecar serve $NET\$" || true); do kill "$p" 2>/dev/null || true; done
  ip netns del "$C" 2>/dev/null || true
  ip netns del "$H" 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT
ip netns add "$H"; ip netns add "$C"
ip -n "$H" link set lo up; ip -n "$C" link set lo up
ip -n "$H" link add name br0 type bridge
ip -n "$H" addr add 10.77.0.1/16 dev br0
ip -n "$H" link set br0 up
ip -n "$H" link add name vc type veth peer name eth0 netns "$C"
ip -n "$H" link set vc master br0 up
ip -n "$C" addr add 10.77.0.2/16 dev eth0
ip -n "$C" link set eth0 up
echo "nameserver 10.77.0.254" > "$RUN/resolv.conf"

add() { # id ip name
  local conf
  conf=$(printf '{"cniVersion":"1.0.0","name":"%s","type":"dnsname","domainName":"dns.podman","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"br0"},{"name":"eth0","sandbox":"/x"}],"ips":[{"address":"%s/16","gateway":"10.77.0.1","interface":1},{"address":"fd77::%x/64","gateway":"fd77::1","interface":1}]}}' "$NET" "$2" "$4")
  echo "$conf" | CNI_COMMAND=ADD CNI_CONTAINERID="$1" CNI_NETNS=/run/netns/$C CNI_IFNAME=eth0 CNI_PATH=/x \
    CNI_ARGS="K8S_POD_NAME=$3" DNS_SIDECAR_RUN_DIR=$RUN DNS_SIDECAR_RESOLV_CONF=$RUN/resolv.conf \
    ip netns exec "$H" "$BIN" >/dev/null
}
ip -n "$H" addr add fd77::1/64 dev br0 nodad
start=$(date +%s.%N)
for i in $(seq 1 "$NAMES"); do
  add "$(printf 'c%011d' "$i")" "10.77.$((i / 250 + 1)).$((i % 250 + 2))" "ctr$i" "$((i + 2))"
done
echo "registered $NAMES containers in $(echo "$(date +%s.%N) - $start" | bc) s"
PID=$(cat "$RUN/$NET/pid")
echo "daemon pid $PID: $(grep VmRSS /proc/$PID/status)"
grep -E "^(Rss|Pss_Anon|Pss_File)" /proc/$PID/smaps_rollup | tr '\n' ' '; echo
last=ctr$NAMES
ip=10.77.$((NAMES / 250 + 1)).$((NAMES % 250 + 2))
rev=$(echo "$ip" | awk -F. '{print $4"."$3"."$2"."$1".in-addr.arpa"}')
# dnsmasq as dnsname ran it, same names, on a second address of the bridge.
DNSMASQ=""
if command -v dnsmasq >/dev/null; then
  ip -n "$H" addr add 10.77.0.254/16 dev br0
  for i in $(seq 1 "$NAMES"); do
    printf '10.77.%d.%d\tctr%d\nfd77::%x\tctr%d\n' $((i / 250 + 1)) $((i % 250 + 2)) "$i" $((i + 2)) "$i"
  done > "$RUN/hosts"
  ip netns exec "$H" dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$RUN/hosts" \
    --local=/dns.podman/ --domain=dns.podman --expand-hosts --bind-interfaces --listen-address=10.77.0.254 \
    --pid-file="$RUN/dnsmasq.pid" --user=root --cache-size=1000 \
    --address=/example.com/192.0.2.1 --local-ttl=300 &
  DNSMASQ=$!
  sleep 0.5
fi
for q in "$last A" "$last.dns.podman AAAA" "$rev PTR" "nope.dns.podman A" "example.com A"; do
  set -- $q
  printf '%-28s %-5s sidecar ' "$1" "$2"
  ip netns exec "$C" "$LOAD" 10.77.0.1 "$1" "$2" "$SECS" "$WINDOW"
  if [ -n "$DNSMASQ" ]; then
    printf '%-28s %-5s dnsmasq ' "$1" "$2"
    ip netns exec "$C" "$LOAD" 10.77.0.254 "$1" "$2" "$SECS" "$WINDOW"
  fi
done
# Latency at a moderate load: one query in flight at a time, then 8.
for w in 1 8; do
  printf 'latency %-20s window %-2s sidecar ' "$last" "$w"
  ip netns exec "$C" "$LOAD" 10.77.0.1 "$last" A "$SECS" "$w"
  if [ -n "$DNSMASQ" ]; then
    printf 'latency %-20s window %-2s dnsmasq ' "$last" "$w"
    ip netns exec "$C" "$LOAD" 10.77.0.254 "$last" A "$SECS" "$w"
  fi
done
echo "daemon after load: $(grep VmRSS /proc/$PID/status)"
[ -n "$DNSMASQ" ] && kill "$DNSMASQ" 2>/dev/null || true
