# Kubernetes nodes, three of them. Sourced by tests/e2e/run.
#
# - The release artifacts (scripts/package): the tarball's layout, the Debian
#   packages' contents and fields, an install of both into a scratch dpkg root.
# - Three nodes: network namespaces on an underlay bridge (in a netns of its
#   own), 192.0.2.1N/24. Each runs its own containerd 1.6 with the CRI plugin
#   inside its netns and its own mount namespace (tmpfs over /var/lib/cni,
#   /run/cni, /run/cni-rs, /run/containerd; root/state/socket/bin/conf dirs
#   under $WORK), driven by tests/k8s/kc_cri.py as the kubelet drives it. Node N
#   gets pod CIDR 10.244.N.0/24 by UpdateRuntimeConfig, rendered by containerd
#   from conf-examples/kubernetes/cni-rs.conflist.tmpl; its plugins are put in
#   place by cni-rs-install from the unpacked tarball (what the DaemonSet does).
# - Pods on different nodes reach each other over host-gw routes (programmed
#   here as a cloud's route table would) and over flannel's VXLAN data plane
#   (flannel.1, FDB, neighbour and route per remote node, as flanneld programs
#   them) at MTU 1450; pod source addresses arrive unchanged; a hostPort on
#   node 2 is reached from pods on the other nodes; deleting pods leaves
#   nothing; plugins upgraded while pods are created on node 3 fail no sandbox.
#
# Test processes in a pod (busybox httpd, wget, ping) run in the sandbox's
# netns (/proc/<pause pid>/ns/net): the pod network is what is under test.
# Everything is removed by run's cleanup (k8s_cleanup below).

K8S=$WORK/k8s
K8S_CGROUP=$TAG-k8s # every sandbox's cgroup parent
K8S_VENV=${E2E_VENV:-$REPO/target/e2e-venv}
NS_UL=$TAG-ul
K8S_NODES=(1 2 3)
K8S_CLUSTER=10.244.0.0/16

node_ns() { echo "$TAG-n$1"; }
node_ip() { echo "192.0.2.1$1"; }
pod_cidr() { echo "10.244.$1.0/24"; }
vtep_mac() { echo "0e:00:00:00:00:0$1"; }
node_mnt() { echo "$K8S/ns/mnt-$1"; }

# The kubelet-like CRI client against node N.
kc() { # node cmd [arg]
  local n=$1
  shift
  KC_CRI_GEN=$K8S/gen timeout --kill-after=10 "$TIMEOUT" \
    "$K8S_VENV/bin/python" "$REPO/tests/k8s/kc_cri.py" -a "$K8S/n$n/containerd.sock" "$@"
}
# A command in node N (its netns and mount namespace).
in_node() { # node cmd...
  local n=$1
  shift
  nsenter --mount="$(node_mnt "$n")" --net="/run/netns/$(node_ns "$n")" -- "$@"
}
in_node_net() { nsenter --net="/run/netns/$(node_ns "$1")" -- "${@:2}"; }
# A command in pod NAME's network namespace.
in_pod() { nsenter --net="/proc/$(cat "$K8S/pods/$1.pid")/ns/net" -- "${@:2}"; }

k8s_ready() {
  [ -f "$K8S/nodes-ready" ] || skip "the three nodes are not up (see the setup scenario)"
}

# ---------------------------------------------------------------- packages
k_package() {
  mkdir -p "$K8S"
  scripts/package "$K8S/package" >"$LOGS/package.log" 2>&1 || {
    tail -n 30 "$LOGS/package.log" >&2
    fail "scripts/package"
  }
  local p=$K8S/package tgz want got names deb
  tgz=$(ls "$p"/cni-plugins-linux-*-v*.tgz)
  log "artifacts: $(cd "$p" && echo *)"
  (cd "$p" && sha256sum -c --quiet ./*.sha256 && sha512sum -c --quiet ./*.sha512) || fail "checksums"
  # The reference layout: flat, every plugin, LICENSE, README.md; root-owned.
  names=$(scripts/plugins | cut -d' ' -f1 | sort)
  want=$( (printf '%s\n' ./ ./LICENSE ./README.md && sed 's|^|./|' <<<"$names") | sort)
  got=$(tar tzf "$tgz" | sort)
  [ "$got" = "$want" ] || fail "tarball layout: $(diff <(echo "$want") <(echo "$got") | tr '\n' ' ')"
  tar tvzf "$tgz" | awk '$2 != "0/0" { bad = 1 } END { exit bad }' || fail "tarball entries not owned by 0/0"
  # What the installer image holds (conf-examples/kubernetes/Containerfile).
  mkdir -p "$K8S/image/opt/cni-rs/bin"
  tar -C "$K8S/image/opt/cni-rs/bin" -xzf "$tgz"
  for n in $names; do
    out=$(CNI_COMMAND=VERSION "$K8S/image/opt/cni-rs/bin/$n" </dev/null) || fail "$n VERSION"
    grep -q supportedVersions <<<"$out" || fail "$n VERSION: $out"
  done

  # The DaemonSet's init container, as the manifest runs it (its args, with
  # the image's and the host's paths under $K8S): everything lands, twice is a no-op.
  local args
  args=$(python3 - conf-examples/kubernetes/cni-rs-daemonset.yaml "$K8S/image" "$K8S/host" <<'PY'
import json, re, sys
text, image, host = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
args = json.loads(re.search(r"^\s+args: (\[.*\])$", text, re.M).group(1))
print("\n".join(a.replace("/opt/cni-rs", image + "/opt/cni-rs").replace("/host/", host + "/") for a in args))
PY
  ) || fail "no args in the DaemonSet manifest"
  mapfile -t args <<<"$args"
  "$p/cni-rs-install" "${args[@]}" >&2 || fail "cni-rs-install with the manifest's args"
  for n in $names; do cmp "$K8S/image/opt/cni-rs/bin/$n" "$K8S/host/opt/cni/bin/$n" || fail "$n not installed"; done
  "$p/cni-rs-install" "${args[@]}" | grep "0 installed, $(wc -w <<<"$names") unchanged" >/dev/null || fail "second run changed something"

  # Debian packages: fields, and files following scripts/plugins.
  deb=$(ls "$p"/cni-rs-plugins_*.deb) || fail "no cni-rs-plugins .deb (is cargo-deb installed? scripts/deps-e2e)"
  local opt
  opt=$(ls "$p"/cni-rs-plugins-opt_*.deb) || fail "no cni-rs-plugins-opt .deb"
  dpkg-deb -f "$deb" >&2
  [ "$(dpkg-deb -f "$deb" Conflicts)" = containernetworking-plugins ] || fail "Conflicts"
  [ "$(dpkg-deb -f "$deb" Replaces)" = containernetworking-plugins ] || fail "Replaces"
  dpkg-deb -f "$deb" Provides | grep 'containernetworking-plugins, container-network-stack (= 1)' >/dev/null || fail "Provides"
  dpkg-deb -f "$deb" Depends | grep '^libc6' >/dev/null || fail "Depends"
  [ "$(dpkg-deb -f "$opt" Depends)" = cni-rs-plugins ] || fail "opt Depends"
  got=$(dpkg-deb -c "$deb" | awk '$6 ~ /^\.\/usr\/lib\/cni\/./ { sub(/.*\//, "", $6); print $6 }' | sort)
  [ "$got" = "$names" ] || fail "/usr/lib/cni in the .deb: $got"
  got=$(dpkg-deb -c "$opt" | awk '$6 ~ /^\.\/opt\/cni\/bin\/./ { print $6, $8 }' | sort)
  want=$(for n in $names; do echo "./opt/cni/bin/$n /usr/lib/cni/$n"; done | sort)
  [ "$got" = "$want" ] || fail "/opt/cni/bin links in the opt .deb: $got"
  # Both install into a scratch root with its own dpkg database (not the machine's).
  local root=$K8S/dpkg-root
  mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
  touch "$root/var/lib/dpkg/status"
  dpkg --root="$root" --force-depends --force-script-chrootless -i "$deb" "$opt" >&2 || fail "dpkg -i"
  dpkg --root="$root" -L cni-rs-plugins-opt | grep /opt/cni/bin/bridge >/dev/null || fail "dpkg -L"
  for n in $names; do
    cmp "$root/usr/lib/cni/$n" "$K8S/image/opt/cni-rs/bin/$n" || fail "/usr/lib/cni/$n differs from the tarball's"
    [ "$(readlink "$root/opt/cni/bin/$n")" = "/usr/lib/cni/$n" ] || fail "/opt/cni/bin/$n"
  done
}

# ---------------------------------------------------------------- nodes
k_nodes() {
  [ -d "$K8S/image/opt/cni-rs/bin" ] || skip "no unpacked tarball (the packages scenario failed)"
  command -v containerd >/dev/null || skip "containerd is not installed (apt-get install containerd)"
  [ -x "$K8S_VENV/bin/python" ] || skip "no CRI client venv at $K8S_VENV (scripts/deps-e2e makes it)"
  local n ns
  mkdir -p "$K8S/ns" "$K8S/pods" "$K8S/www/cgi-bin" "$K8S/gen"
  # Served by the pods: a full-size transfer and who the peer is (REMOTE_ADDR).
  head -c 1048576 /dev/urandom >"$K8S/www/big"
  # (httpd listens on IPv6: IPv4 peers come as [::ffff:a.b.c.d].)
  cat >"$K8S/www/cgi-bin/ip" <<'EOF'
#!/bin/sh
a=${REMOTE_ADDR#\[}
a=${a%\]}
printf 'Content-Type: text/plain\r\n\r\n%s\n' "${a#::ffff:}"
EOF
  chmod 0755 "$K8S/www/cgi-bin/ip"
  python3 tests/k8s/pause_image.py "$K8S/pause.tar" localhost/kcpause:3.6 "$(command -v busybox)"

  # The underlay: a bridge in a netns of its own; node N's eth0 is on it.
  k8s_netns "$NS_UL"
  ip -n "$NS_UL" link add br0 type bridge
  ip -n "$NS_UL" link set br0 up
  mount --bind "$K8S/ns" "$K8S/ns"
  mount --make-private "$K8S/ns"
  touch "$K8S/ns-mounted"
  for n in "${K8S_NODES[@]}"; do
    ns=$(node_ns "$n")
    k8s_netns "$ns"
    ip -n "$ns" link add eth0 type veth peer name "n$n" netns "$NS_UL"
    ip -n "$NS_UL" link set "n$n" master br0 up
    ip -n "$ns" addr add "$(node_ip "$n")/24" dev eth0
    ip -n "$ns" link set eth0 up
    # The node's own mount namespace: its CNI state is its own.
    touch "$(node_mnt "$n")"
    unshare --mount="$(node_mnt "$n")" --propagation slave true
    # shellcheck disable=SC2016 # expanded by that sh
    nsenter --mount="$(node_mnt "$n")" -- sh -ec '
      for d in /var/lib/cni /run/cni /run/cni-rs /run/containerd; do mount -t tmpfs "k8s-node-$1" "$d"; done' sh "$n"
    k8s_node_up "$n"
  done
  for n in "${K8S_NODES[@]}"; do ping_node 1 "$n"; done
  touch "$K8S/nodes-ready"
}

k8s_netns() { ip netns add "$1" && echo "$1" >>"$K8S/netns" && ip -n "$1" link set lo up; }
ping_node() { in_node_net "$1" ping -c1 -W2 "$(node_ip "$2")" >/dev/null || fail "node $1 cannot reach node $2"; }

# containerd with the CRI plugin on node N; plugins installed by the installer;
# the pod CIDR from UpdateRuntimeConfig.
k8s_node_up() {
  local n=$1 d=$K8S/n$1
  mkdir -p "$d/bin" "$d/conf" "$d/podlogs"
  "$K8S/package/cni-rs-install" --from "$K8S/image/opt/cni-rs/bin" --to "$d/bin" >&2 || fail "cni-rs-install on node $n"
  cp conf-examples/kubernetes/cni-rs.conflist.tmpl "$d/"
  cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.opt"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/kcpause:3.6"
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$d/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$d/bin"
    conf_dir = "$d/conf"
    max_conf_num = 1
    conf_template = "$d/cni-rs.conflist.tmpl"
EOF
  nsenter --mount="$(node_mnt "$n")" --net="/run/netns/$(node_ns "$n")" -- \
    containerd --config "$d/config.toml" >"$LOGS/containerd-n$n.log" 2>&1 &
  track_pid $!
  retry 120 0.25 kc "$n" version >/dev/null 2>&1 || {
    tail -n 20 "$LOGS/containerd-n$n.log" >&2
    fail "containerd on node $n did not come up"
  }
  in_node "$n" ctr --address "$d/containerd.sock" -n k8s.io images import --snapshotter native "$K8S/pause.tar" >&2
  kc "$n" update-runtime-config "$(pod_cidr "$n")"
  local list=$d/conf/10-containerd-net.conflist
  retry 40 0.25 test -s "$list" || fail "node $n: containerd rendered no conflist from the template"
  python3 - "$list" "$(pod_cidr "$n")" <<'PY' || fail "node $n: rendered conflist"
import json, sys
c = json.load(open(sys.argv[1]))
ipam = c["plugins"][0]["ipam"]
assert ipam["ranges"] == [[{"subnet": sys.argv[2]}]], ipam
assert ipam["routes"] == [{"dst": "0.0.0.0/0"}], ipam
assert [p["type"] for p in c["plugins"]] == ["bridge", "portmap", "firewall"], c
PY
  # shellcheck disable=SC2317 # called through retry
  ready() { kc "$1" status | grep '"NetworkReady": true.*"networks": \["cni-loopback", "k8s-pod-network"\]' >/dev/null; }
  retry 40 0.25 ready "$n" || fail "node $n: network not ready: $(kc "$n" status)"
  log "node $n: $(kc "$n" version)"
  log "node $n: $(tr -d ' \n' <"$list")"
}

# ---------------------------------------------------------------- pods
# A pod sandbox on node N: NAME, optional hostPort to its port 80.
runp() { # node name [hostport]
  local n=$1 name=$2 hp=${3:-0} f=$K8S/pods/$2
  python3 - "$name" "$K8S_CGROUP" "$K8S/n$n/podlogs" "$hp" >"$f.json" <<'PY'
import json, sys
name, cg, logs, hp = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
print(json.dumps({
  "metadata": {"name": name, "namespace": "e2e", "uid": "uid-" + name, "attempt": 0},
  "hostname": name, "log_directory": logs + "/" + name,
  "dns_config": {"servers": ["10.96.0.10"], "searches": ["e2e.svc.cluster.local"], "options": ["ndots:5"]},
  "port_mappings": [{"protocol": "TCP", "container_port": 80, "host_port": hp}] if hp else [],
  "labels": {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "e2e"},
  "linux": {"cgroup_parent": "/" + cg + "/" + name,
            "security_context": {"namespace_options": {"network": "POD", "pid": "CONTAINER", "ipc": "POD"}}}}))
PY
  echo "$n" >"$f.node"
  kc "$n" runp "$f.json" >"$f.id" || return 1
  kc "$n" inspectp "$(cat "$f.id")" >"$f.status" || return 1
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["state"] == "SANDBOX_READY", s["state"]; print(s["ip"]); print(s["pid"], file=open(sys.argv[2], "w"))' \
    "$f.status" "$f.pid" >"$f.ip" || return 1
  log "pod $name on node $n: $(cat "$f.ip") (sandbox $(cut -c1-12 "$f.id"), pid $(cat "$f.pid"))"
}
pod_ip() { cat "$K8S/pods/$1.ip"; }
# Remove a pod as the kubelet does: stop (twice: it repeats), then remove.
rmpod() { # name
  local f=$K8S/pods/$1 n id
  n=$(cat "$f.node")
  id=$(cat "$f.id")
  kc "$n" stopp "$id" && kc "$n" stopp "$id" && kc "$n" rmp "$id" || return 1
  rm -f "$f".*
}
serve() { # pod: busybox httpd on port 80 in the pod's netns (nsenter execs it: $! is httpd)
  nsenter --net="/proc/$(cat "$K8S/pods/$1.pid")/ns/net" -- busybox httpd -f -p 80 -h "$K8S/www" &
  track_pid $!
  echo $! >>"$K8S/servers"
}
stop_servers() {
  local pid
  for pid in $(cat "$K8S/servers" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  rm -f "$K8S/servers"
}
get() { in_pod "$1" timeout 10 busybox wget -q -O- "$2"; }

# Pod SRC reaches pod DST: its address as the peer sees it, and 1 MiB intact.
pod_to_pod() { # src dst
  local peer sum
  peer=$(retry 20 0.25 get "$1" "http://$(pod_ip "$2")/cgi-bin/ip") || fail "$1 -> $2: no answer"
  [ "$peer" = "$(pod_ip "$1")" ] || fail "$1 -> $2: seen as $peer, not $(pod_ip "$1") (NAT between pods)"
  sum=$(get "$1" "http://$(pod_ip "$2")/big" | sha256sum | cut -d' ' -f1)
  [ "$sum" = "$(sha256sum <"$K8S/www/big" | cut -d' ' -f1)" ] || fail "$1 -> $2: 1 MiB transfer corrupted or cut"
  log "$1 ($(pod_ip "$1")) -> $2 ($(pod_ip "$2")): peer address kept, 1 MiB intact"
}

# A pod on another node reaches the hostPort on node 2's address.
host_port() { # src port
  local peer
  peer=$(retry 20 0.25 get "$1" "http://$(node_ip 2):$2/cgi-bin/ip") || fail "$1 -> node 2:$2: no answer"
  [ "$peer" = "$(pod_ip "$1")" ] || fail "$1 -> node 2:$2: seen as $peer"
  log "$1 -> hostPort $(node_ip 2):$2: answered, peer $peer"
}

# Nothing of any pod is left on node N.
node_clean() { # node
  local n=$1 ns l
  ns=$(node_ns "$n")
  l=$(kc "$n" pods)
  [ -z "$l" ] || fail "node $n: sandboxes left: $l"
  l=$(except 'lo|eth0|cni0|flannel\.1' "$(links_of "$ns")")
  [ -z "$l" ] || fail "node $n: links left: $l"
  l=$(in_node "$n" find /var/lib/cni/networks -type f ! -name lock ! -name 'last_reserved_ip*' ! -name 'cnirs-index*' 2>/dev/null)
  [ -z "$l" ] || fail "node $n: leases left: $l"
  l=$(in_node "$n" find /var/lib/cni/results /run/cni -mindepth 1 2>/dev/null)
  [ -z "$l" ] || fail "node $n: plugin state left: $l"
  l=$(in_node_net "$n" nft list ruleset | grep -A2 'elements =' || true)
  [ -z "$l" ] || fail "node $n: nf_tables elements left: $l"
  l=$(in_node "$n" find "$K8S/n$n/state" -path '*netns*' -type f 2>/dev/null)
  [ -z "$l" ] || fail "node $n: pod netns left: $l"
  l=$(find /sys/fs/cgroup/ -maxdepth 6 -path "*/$K8S_CGROUP/*" -name cgroup.procs -exec cat {} + 2>/dev/null)
  [ -z "$l" ] || fail "node $n: sandbox processes left: $l"
  log "node $n clean: links $(links_of "$ns")"
}

# ---------------------------------------------------------------- host-gw
k_hostgw() {
  k8s_ready
  local n m
  for n in "${K8S_NODES[@]}"; do
    if [ "$n" = 2 ]; then runp "$n" "hg$n" 30080; else runp "$n" "hg$n"; fi
    python3 -c 'import ipaddress,sys; assert ipaddress.ip_address(sys.argv[1]) in ipaddress.ip_network(sys.argv[2])' \
      "$(pod_ip "hg$n")" "$(pod_cidr "$n")" || fail "hg$n: $(pod_ip "hg$n") not in node $n's pod CIDR"
    serve "hg$n"
  done
  # The route table a cloud (or a routing daemon) programs: each node's pod
  # CIDR via that node's address.
  for n in "${K8S_NODES[@]}"; do
    for m in "${K8S_NODES[@]}"; do
      [ "$n" = "$m" ] || ip -n "$(node_ns "$n")" route add "$(pod_cidr "$m")" via "$(node_ip "$m")" dev eth0
    done
  done
  for n in "${K8S_NODES[@]}"; do
    for m in "${K8S_NODES[@]}"; do
      [ "$n" = "$m" ] || pod_to_pod "hg$n" "hg$m"
    done
  done
  in_pod hg1 ping -c1 -W2 -M "do" -s 1472 "$(pod_ip hg3)" >/dev/null || fail "full-size (1500) packet hg1 -> hg3"
  host_port hg1 30080
  host_port hg3 30080
  stop_servers
  for n in "${K8S_NODES[@]}"; do rmpod "hg$n"; done
  for n in "${K8S_NODES[@]}"; do
    for m in "${K8S_NODES[@]}"; do
      [ "$n" = "$m" ] || ip -n "$(node_ns "$n")" route del "$(pod_cidr "$m")"
    done
    node_clean "$n"
  done
}

# ---------------------------------------------------------------- flannel VXLAN
# flannel's node list (kube-flannel's cbr0: flannel delegating to bridge, then
# portmap), with the bridge config flannel generates from the subnet file
# (FLANNEL_NETWORK=10.244.0.0/16, FLANNEL_SUBNET=10.244.N.1/24, FLANNEL_MTU=1450,
# FLANNEL_IPMASQ=true): see test-harness/tests/flannel_delegate.rs.
flannel_list() { # node
  cat <<EOF
{"cniVersion":"0.3.1","name":"cbr0","plugins":[
 {"hairpinMode":true,"ipMasq":false,"ipam":{"ranges":[[{"subnet":"$(pod_cidr "$1")"}]],"routes":[{"dst":"$K8S_CLUSTER"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":true,"mtu":1450,"type":"bridge"},
 {"type":"portmap","capabilities":{"portMappings":true}}]}
EOF
}

# What flanneld's VXLAN backend programs on node N: flannel.1 (VNI 1, the
# kernel's port 8472, no learning, MTU 1500-50, the node's subnet .0/32), and
# per remote node M: neighbour 10.244.M.0 -> M's VTEP MAC, FDB MAC -> M's
# address, route 10.244.M.0/24 via 10.244.M.0 onlink.
flannel_vxlan() { # node
  local n=$1 ns m
  ns=$(node_ns "$n")
  ip -n "$ns" link add flannel.1 address "$(vtep_mac "$n")" type vxlan id 1 \
    local "$(node_ip "$n")" dev eth0 nolearning dstport 8472
  ip -n "$ns" link set flannel.1 mtu 1450 up
  ip -n "$ns" addr add "10.244.$n.0/32" dev flannel.1
  for m in "${K8S_NODES[@]}"; do
    [ "$n" = "$m" ] && continue
    ip -n "$ns" neigh replace "10.244.$m.0" lladdr "$(vtep_mac "$m")" dev flannel.1 nud permanent
    in_node_net "$n" bridge fdb replace "$(vtep_mac "$m")" dev flannel.1 dst "$(node_ip "$m")" self permanent
    ip -n "$ns" route replace "$(pod_cidr "$m")" via "10.244.$m.0" dev flannel.1 onlink
  done
}

vxlan_tx() { ip -n "$(node_ns "$1")" -s -j link show flannel.1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])'; }

k_vxlan() {
  k8s_ready
  local n m before
  for n in "${K8S_NODES[@]}"; do
    # The cluster network changes: containerd's list goes, flannel's comes
    # (the CRI plugin reloads conf_dir), and the old bridge with it.
    rm -f "$K8S/n$n/conf/10-containerd-net.conflist"
    flannel_list "$n" >"$K8S/n$n/conf/10-flannel.conflist"
    ip -n "$(node_ns "$n")" link del cni0 2>/dev/null || true
    flannel_vxlan "$n"
  done
  # containerd reloads conf_dir on its own (inotify): wait until it runs cbr0.
  for n in "${K8S_NODES[@]}"; do
    # shellcheck disable=SC2317 # called through retry
    loaded() { kc "$1" status | grep '"networks": \["cni-loopback", "cbr0"\]' >/dev/null; }
    retry 40 0.25 loaded "$n" || fail "node $n: containerd did not load flannel's list: $(kc "$n" status)"
  done
  for n in "${K8S_NODES[@]}"; do
    if [ "$n" = 2 ]; then
      runp "$n" "vx$n" 30081
    else
      runp "$n" "vx$n"
    fi
    in_pod "vx$n" ip -o link show eth0 | grep ' mtu 1450 ' >/dev/null || fail "vx$n: eth0 MTU is not flannel's 1450"
    in_pod "vx$n" ip route | grep "^$K8S_CLUSTER via 10.244.$n.1 dev eth0" >/dev/null || fail "vx$n: no cluster route"
    serve "vx$n"
  done
  before=$(vxlan_tx 1)
  for n in "${K8S_NODES[@]}"; do
    for m in "${K8S_NODES[@]}"; do
      [ "$n" = "$m" ] || pod_to_pod "vx$n" "vx$m"
    done
  done
  # Node 1's pod served 1 MiB to each of the two others: through flannel.1.
  [ "$(vxlan_tx 1)" -gt $((before + 2 * 1048576)) ] || fail "node 1 sent less than 2 MiB through flannel.1"
  # Full-size at 1450: 1422 bytes of ICMP data + 28 fit; one more does not.
  for n in 1 3; do
    in_pod "vx$n" ping -c1 -W2 -M "do" -s 1422 "$(pod_ip vx2)" >/dev/null || fail "vx$n: 1450-byte packet to vx2 over VXLAN"
    ! in_pod "vx$n" ping -c1 -W2 -M "do" -s 1423 "$(pod_ip vx2)" >/dev/null 2>&1 || fail "vx$n: 1451 bytes went through"
  done
  host_port vx1 30081
  host_port vx3 30081
  stop_servers
  for n in "${K8S_NODES[@]}"; do rmpod "vx$n"; done
  for n in "${K8S_NODES[@]}"; do node_clean "$n"; done
}

# ---------------------------------------------------------------- upgrade under load
k_upgrade() {
  k8s_ready
  local new=$K8S/image/opt/cni-rs/bin old=$K8S/image-old i r bin=$K8S/n3/bin
  # An "older release": the same binaries with their version marker saying 0.0.1.
  mkdir -p "$old"
  python3 - "$new" "$old" <<'PY'
import os, re, sys
src, dst = sys.argv[1:]
for name in os.listdir(src):
    data = open(os.path.join(src, name), "rb").read()
    m = re.search(rb"\0cni-rs-plugins version ([^\0]+)\0", data)
    if m:
        old = b"0.0.1".ljust(len(m.group(1)), b"\0")
        data = data[:m.start(1)] + old + data[m.end(1):]
    with open(os.path.join(dst, name), "wb") as f:
        f.write(data)
    os.chmod(os.path.join(dst, name), os.stat(os.path.join(src, name)).st_mode & 0o777)
PY
  "$K8S/package/cni-rs-install" --from "$old" --to "$bin" --force >&2 # the node runs the old release
  # Pods are created on node 3 while the installer replaces its plugins:
  # the upgrade, then back and forth (--force) to keep the window open.
  (
    for i in 1 2 3 4 5 6; do
      if runp 3 "up$i"; then echo "up$i ok"; else echo "up$i FAILED"; fi
    done >"$K8S/upgrade-results" 2>>"$LOGS/k_upgrade.pods.log"
  ) &
  local creator=$!
  track_pid $creator
  r=0
  while kill -0 "$creator" 2>/dev/null; do
    "$K8S/package/cni-rs-install" --from "$new" --to "$bin" >/dev/null || fail "upgrade (round $r)"
    "$K8S/package/cni-rs-install" --from "$old" --to "$bin" --force >/dev/null || fail "forced downgrade (round $r)"
    r=$((r + 1))
  done
  wait "$creator" || true
  "$K8S/package/cni-rs-install" --from "$new" --to "$bin" >&2 || fail "final upgrade"
  log "installer rounds while pods were created: $r"
  cat "$K8S/upgrade-results" >&2
  [ "$r" -ge 2 ] || fail "the pods were created before the installer got going ($r rounds)"
  [ "$(grep -c ' ok$' "$K8S/upgrade-results")" = 6 ] || fail "a sandbox failed during the upgrade"
  for i in 1 2 3 4 5 6; do
    python3 -c 'import ipaddress,sys; assert ipaddress.ip_address(sys.argv[1]) in ipaddress.ip_network(sys.argv[2])' \
      "$(pod_ip "up$i")" "$(pod_cidr 3)" || fail "up$i: no address from node 3's CIDR"
  done
  # The upgrade is done: every plugin is the new release's.
  for i in $(scripts/plugins | cut -d' ' -f1); do cmp "$new/$i" "$bin/$i" || fail "$i not upgraded"; done
  for i in 1 2 3 4 5 6; do rmpod "up$i"; done
  node_clean 3
}

# ---------------------------------------------------------------- cleanup
# Called by run's cleanup before the netns go: sandboxes, then containerd
# (tracked PIDs), shims and pause processes (by cgroup), mount namespaces.
k8s_cleanup() {
  [ -d "$K8S" ] || return 0
  local n id pid ns
  if [ -x "$K8S_VENV/bin/python" ]; then
    for n in "${K8S_NODES[@]}"; do
      [ -S "$K8S/n$n/containerd.sock" ] || continue
      for id in $(TIMEOUT=20 kc "$n" pods 2>/dev/null | cut -d' ' -f1); do
        TIMEOUT=20 kc "$n" stopp "$id" >/dev/null 2>&1
        TIMEOUT=20 kc "$n" rmp "$id" >/dev/null 2>&1
      done
    done
  fi
}

# After run's cleanup has killed what ran in our netns: the netns, the
# node mount namespaces (and with them the pods' netns mounts and tmpfs).
k8s_cleanup_late() {
  [ -d "$K8S" ] || return 0
  local ns n
  for ns in $(cat "$K8S/netns" 2>/dev/null); do
    for pid in $(procs_in_netns "$ns" | cut -d' ' -f1); do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  if [ -f "$K8S/ns-mounted" ]; then
    for n in "${K8S_NODES[@]}"; do
      [ -f "$(node_mnt "$n")" ] && { umount "$(node_mnt "$n")" 2>/dev/null || umount -l "$(node_mnt "$n")"; }
    done
    umount "$K8S/ns" 2>/dev/null || umount -l "$K8S/ns"
  fi
}

k8s_scenarios() {
  scenario "k8s: packages (reference-layout tarball, the DaemonSet manifest's installer run, cni-rs-plugins and -opt .debs installed into a scratch root)" k_package
  scenario "k8s: three nodes, each containerd+CRI in its netns; plugins by cni-rs-install; pod CIDR from UpdateRuntimeConfig via conf_template" k_nodes
  scenario "k8s: host-gw routes: pods on every node reach each other (no NAT, 1 MiB intact), hostPort on node 2 from other nodes; deletion leaves nothing" k_hostgw
  scenario "k8s: flannel VXLAN (flannel.1, FDB/neigh/routes as flanneld) with flannel's bridge config: MTU 1450 full-size, pods across nodes, hostPort; nothing left" k_vxlan
  scenario "k8s: plugins upgraded by cni-rs-install while pods are created on node 3: no failed sandbox" k_upgrade
}
