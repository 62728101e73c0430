# containerd 1.6 (Debian 12) `ctr run --cni`, on our plugin dir. Sourced by tests/e2e/run.
# containerd and ctr run in the private mount namespace, where our conf and bin
# dirs are bind-mounted over /etc/cni/net.d and /opt/cni/bin (ctr has no flags
# for them), and in $NSC, our stand-in for the host.
#
# ctr calls the plugins itself: ADD after creating the task, with
# CNI_NETNS=/proc/<pid>/ns/net and CNI_CONTAINERID=<namespace>-<id>; DEL only
# after the task has exited, when that netns is gone, so teardown must work from
# prevResult alone. ctr only does that DEL when it runs in the foreground.

CD=$WORK/containerd
CTR_NET=k8s-pod-network
CTR_SUBNET=10.89.44.0/24

ctr_() { tin_ns "$NSC" ctr --address "$CD/containerd.sock" --namespace "$CTR_NS" "$@"; }
# A foreground `ctr run --cni`: the task's exit code is ctr's.
ctr_run() { # id cmd...
  ctr_ run --cni --rm --rootfs \
    --mount "type=bind,src=$CD/shared,dst=/shared,options=rbind:rw" \
    "$WORK/rootfs" "$1" "${@:2}" # no image config, so no PATH: absolute commands
}

c_setup() {
  if ! command -v containerd >/dev/null || ! command -v ctr >/dev/null; then
    skip "containerd is not installed (apt-get install containerd)"
  fi
  command -v runc >/dev/null || skip "runc is not installed (apt-get install runc)"
  containerd --version
  mkdir -p "$CD/shared"
  cat >"$CD/config.toml" <<EOF
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CD/containerd.sock"
[ttrpc]
  address = "$CD/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CD/opt"
EOF
  # The documented node list (conf-examples/kubernetes/10-k8s-node.conflist:
  # bridge, host-local, portmap, firewall) with our bridge and subnet, plus
  # tuning setting a per-netns sysctl the task checks.
  python3 - "$CTR_NET" "$CTR_SUBNET" conf-examples/kubernetes/10-k8s-node.conflist \
    >"$WORK/etc-cni/10-$CTR_NET.conflist" <<'PY'
import json, sys
name, subnet, path = sys.argv[1:]
c = json.load(open(path))
assert c["cniVersion"] == "1.0.0", c["cniVersion"]
c["name"] = name
br = c["plugins"][0]
br["bridge"] = "cni-e2e0"
br["ipam"]["ranges"] = [[{"subnet": subnet}]]
c["plugins"].append({"type": "tuning", "sysctl": {"net.core.somaxconn": "1000"}})
print(json.dumps(c, indent=2))
PY
  log "plugins: $(python3 -c 'import json,sys; print(" ".join(p["type"] for p in json.load(open(sys.argv[1]))["plugins"]))' \
    "$WORK/etc-cni/10-$CTR_NET.conflist")"
  # The documented CRI settings parse, and name our dirs.
  containerd --config conf-examples/kubernetes/containerd-config.toml config dump >"$CD/cri-config.dump"
  grep -q 'bin_dir = "/opt/cni/bin"' "$CD/cri-config.dump" || fail "containerd-config.toml: bin_dir not applied"
  # Not through a function: $! must be containerd itself (nsenter execs it).
  nsenter --mount="$MNTNS" --net="/run/netns/$NSC" -- \
    containerd --config "$CD/config.toml" >"$LOGS/containerd.log" 2>&1 &
  echo $! >"$CD/pid"
  track_pid $!
  retry 120 0.25 ctr_ version >/dev/null || {
    tail -n 20 "$LOGS/containerd.log" >&2
    fail "containerd did not come up"
  }
  ctr_ version
}

c_run() {
  [ -S "$CD/containerd.sock" ] || skip "containerd setup did not complete (see above)"
  # a: writes its address for b, then waits to be told to exit.
  cat >"$CD/shared/a.sh" <<'EOF'
export PATH=/bin
ip -4 -o addr show dev eth0 | awk '{ split($4, a, "/"); print a[1] }' >/shared/a.addr.tmp
mv /shared/a.addr.tmp /shared/a.addr
while [ ! -e /shared/stop ]; do sleep 0.2; done
EOF
  # b: its address, the gateway, a, and the sysctl tuning set.
  cat >"$CD/shared/b.sh" <<'EOF'
set -e
export PATH=/bin
ip -4 -o addr show dev eth0
gw=$(ip route | awk '/^default/ { print $3 }')
echo "gateway: $gw"
ping -c 1 -W 3 "$gw"
ping -c 1 -W 3 "$1"
echo "net.core.somaxconn=$(cat /proc/sys/net/core/somaxconn)"
[ "$(cat /proc/sys/net/core/somaxconn)" = 1000 ]
EOF
  # In the background, as a plain command so that $! is the `timeout` that
  # bounds it (killing it stops ctr too).
  timeout --kill-after=10 "$TIMEOUT" nsenter --mount="$MNTNS" --net="/run/netns/$NSC" -- \
    ctr --address "$CD/containerd.sock" --namespace "$CTR_NS" run --cni --rm --rootfs \
    --mount "type=bind,src=$CD/shared,dst=/shared,options=rbind:rw" \
    "$WORK/rootfs" a /bin/sh /shared/a.sh >"$LOGS/ctr-a.log" 2>&1 &
  local apid=$! a
  track_pid $apid
  # shellcheck disable=SC2317 # called through retry
  a_up() { test -s "$CD/shared/a.addr" || ! kill -0 "$apid" 2>/dev/null; } # or ctr gave up
  retry 240 0.25 a_up || true
  test -s "$CD/shared/a.addr" || {
    cat "$LOGS/ctr-a.log" >&2
    fail "container a got no address"
  }
  a=$(cat "$CD/shared/a.addr")
  log "a = $a"
  ctr_run b /bin/sh /shared/b.sh "$a" >&2 || fail "container b: address/gateway/a/sysctl check failed"
  touch "$CD/shared/stop"
  local rc=0
  wait $apid || rc=$?
  [ $rc -eq 0 ] || {
    cat "$LOGS/ctr-a.log" >&2
    fail "ctr run a exited with $rc"
  }
}

c_clean() {
  [ -S "$CD/containerd.sock" ] || skip "containerd setup did not complete (see above)"
  local l cpid
  cpid=$(cat "$CD/pid")
  l=$(ctr_ tasks ls -q; ctr_ containers ls -q)
  [ -z "$l" ] || fail "tasks/containers left: $l"
  # The bridge is the network's, not a container's (the reference keeps it too).
  l=$(except 'lo|cni-e2e0' "$(links_of "$NSC")")
  [ -z "$l" ] || fail "links left: $l"
  l=$(in_ns "$NSC" find /var/lib/cni/networks -type f ! -name lock ! -name 'last_reserved_ip*' ! -name 'cnirs-index*' 2>/dev/null)
  [ -z "$l" ] || fail "leases left: $l"
  l=$(nsenter --net="/run/netns/$NSC" -- nft list ruleset | grep -E -A2 "elements =|$CTR_NS-" || true)
  [ -z "$l" ] || fail "nf_tables elements left: $l"
  l=$(in_ns "$NSC" find /run/cni -mindepth 2 2>/dev/null; in_ns "$NSC" find /var/lib/cni/results -mindepth 1 2>/dev/null)
  [ -z "$l" ] || fail "plugin state left: $l"
  l=$(procs_in_netns "$NSC" | grep -v "^$cpid " || true)
  [ -z "$l" ] || fail "processes left besides containerd: $l"
  log "links: $(links_of "$NSC"); tables: $(nsenter --net="/run/netns/$NSC" -- nft list tables | tr '\n' ' ')"
}

containerd_scenarios() {
  scenario "containerd: setup (private root/state/socket, conf/bin dirs bind-mounted)" c_setup
  scenario "containerd: ctr run --cni (1.0.0 node list + tuning): address, gateway, another container, sysctl" c_run
  scenario "containerd: after the tasks exit and DEL runs (netns gone), nothing is left" c_clean
}
