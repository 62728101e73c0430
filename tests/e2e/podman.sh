# Podman 4 (Debian 12) with its CNI backend, on our plugin dir. Sourced by tests/e2e/run.
# Podman runs in the private mount namespace and in $NSP, our stand-in for the
# host: its bridges, veths, nf_tables tables and DNS daemons all land there.

PM=$WORK/podman
LAN_PEER_IP=192.168.77.10
HOST_IP=203.0.113.1

pm() {
  CONTAINERS_CONF=$PM/containers.conf CONTAINERS_STORAGE_CONF=$PM/storage.conf \
    tin_ns "$NSP" podman --root "$PM/root" --runroot "$PM/runroot" --storage-driver vfs "$@"
}
# The address of a container on one network.
pm_ip() { pm inspect -f "{{(index .NetworkSettings.Networks \"$2\").IPAddress}}" "$1"; }
pm_run() { pm run -d --network "$2" --name "$1" "${@:3}" >/dev/null; } # name network [opts] image cmd
conflist() { cat "$PM/net.d/$1.conflist"; }
# The plugin types of a network list, in order.
plugin_types() {
  python3 -c 'import json,sys; print(" ".join(p["type"] for p in json.load(sys.stdin)["plugins"]))' < <(conflist "$1")
}
# Does a container reach an address (one ping, 3 s)?
can_ping() { pm exec "$1" ping -c 1 -W 3 "$2" >/dev/null 2>&1; }

p_setup() {
  command -v podman >/dev/null || skip "podman is not installed (apt-get install podman)"
  command -v runc >/dev/null || skip "runc is not installed (apt-get install runc)"
  podman --version
  mkdir -p "$PM/net.d" "$PM/tmp"
  # The documented configuration (conf-examples/podman/containers.conf), with
  # our private plugin and network dirs...
  sed -e "s|\"/opt/cni/bin\"|\"$WORK/bin\"|" \
    -e "s|^network_config_dir = .*|network_config_dir = \"$PM/net.d\"|" \
    conf-examples/podman/containers.conf >"$PM/containers.conf"
  grep -q "^cni_plugin_dirs = \[\"$WORK/bin\"\]" "$PM/containers.conf" || fail "containers.conf example changed shape"
  # ...and what this machine needs. Podman's default nofile/nproc limits
  # exceed the hard limits of sandboxes like CI runners (runc then fails to
  # apply them); crun fails on some cgroup layouts; no systemd here.
  cat >>"$PM/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$PM/events.log"
tmp_dir = "$PM/tmp"
EOF
  cat >"$PM/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$PM/root"
runroot = "$PM/runroot"
EOF
  # The host's uplink address, and a LAN (a veth to a peer netns) for macvlan.
  ip -n "$NSP" link add up0 type veth peer name up0p # (no dummy module on every kernel)
  ip -n "$NSP" link set up0p up
  ip -n "$NSP" addr add "$HOST_IP/24" dev up0
  ip -n "$NSP" link set up0 up
  ip -n "$NSP" link add lan0 type veth peer name eth0 netns "$NSL"
  ip -n "$NSP" link set lan0 up
  ip -n "$NSL" addr add "$LAN_PEER_IP/24" dev eth0
  ip -n "$NSL" link set eth0 up
  echo 1 >"$WORK/podman-ready" # the cleanup may now call podman
  # No registry: the image is busybox-static, imported.
  tar -C "$WORK/rootfs" -c . | pm import - "$IMAGE"
  pm image exists "$IMAGE"
  [ "$(pm info --format '{{.Host.NetworkBackend}}')" = cni ] || fail "podman does not use the CNI backend"
}

p_network_create() {
  pm network create e2e-net
  local types
  types=$(plugin_types e2e-net)
  log "generated list: $types"
  [ "$types" = "bridge portmap firewall tuning dnsname" ] || fail "unexpected default list: $types"
  conflist e2e-net | grep -q '"domainName": "dns.podman"' || fail "no dns.podman domain in the list"
}

p_dns() {
  pm_run a1 e2e-net "$IMAGE" sleep 3600
  pm_run a2 e2e-net "$IMAGE" sleep 3600
  log "a1=$(pm_ip a1 e2e-net) a2=$(pm_ip a2 e2e-net)"
  pm exec a1 cat /etc/resolv.conf >&2
  pm exec a1 ping -c 1 -W 3 a2
  pm exec a1 ping -c 1 -W 3 a2.dns.podman
  pm exec a2 ping -c 1 -W 3 a1
  pm exec a2 ping -c 1 -W 3 a1.dns.podman
}

p_port() {
  pm_run web e2e-net -p 8080:80 "$IMAGE" sh -c 'echo hello-from-web >/www/index.html && exec httpd -f -p 80 -h /www'
  local url got
  for url in "http://127.0.0.1:8080/" "http://$HOST_IP:8080/"; do
    got=$(retry 40 0.25 http_get "$NSP" "$url" 2>/dev/null) || got=$(http_get "$NSP" "$url") \
      || fail "GET $url from the host failed"
    log "host GET $url -> $got"
    [ "$got" = hello-from-web ] || fail "GET $url returned '$got'"
  done
  # Hairpin: another container on the same bridge, through the host's address.
  got=$(pm exec a1 timeout 10 wget -q -O- "http://$HOST_IP:8080/") || fail "hairpin GET from a1 failed"
  log "a1 GET http://$HOST_IP:8080/ -> $got"
  [ "$got" = hello-from-web ]
}

p_isolate() {
  pm network create -o isolate=true e2e-iso1
  pm network create -o isolate=true e2e-iso2
  conflist e2e-iso1 | grep -q '"ingressPolicy": "same-bridge"' || fail "no same-bridge policy in the isolated list"
  pm_run i1 e2e-iso1 "$IMAGE" sleep 3600
  pm_run i2 e2e-iso2 "$IMAGE" sleep 3600
  local ip1 ip2 gw1
  ip1=$(pm_ip i1 e2e-iso1) ip2=$(pm_ip i2 e2e-iso2)
  gw1=$(pm inspect -f '{{(index .NetworkSettings.Networks "e2e-iso1").Gateway}}' i1)
  log "i1=$ip1 (gw $gw1) i2=$ip2"
  # Controls first, so the negative checks below cannot pass for a wrong reason.
  can_ping i1 "$gw1" || fail "i1 does not reach its own gateway"
  can_ping i2 "$(pm inspect -f '{{(index .NetworkSettings.Networks "e2e-iso2").Gateway}}' i2)" \
    || fail "i2 does not reach its own gateway"
  ! can_ping i1 "$ip2" || fail "i1 ($ip1) reached i2 ($ip2) across isolated networks"
  ! can_ping i2 "$ip1" || fail "i2 ($ip2) reached i1 ($ip1) across isolated networks"
  log "i1 <-> i2: no replies, as expected"
}

p_macvlan() {
  pm network create -d macvlan -o parent=lan0 --subnet 192.168.77.0/24 --gateway 192.168.77.1 e2e-mv
  [ "$(plugin_types e2e-mv)" = macvlan ] || fail "unexpected macvlan list: $(plugin_types e2e-mv)"
  pm_run m1 e2e-mv "$IMAGE" sleep 3600
  local ip
  ip=$(pm_ip m1 e2e-mv)
  log "m1=$ip on the LAN"
  nsenter --net="/run/netns/$NSL" -- ping -c 1 -W 3 "$ip"
  pm exec m1 ping -c 1 -W 3 "$LAN_PEER_IP"
}

p_lifecycle() {
  # --ip (the ips capability), --network-alias (aliases), connect/disconnect
  # (a second interface), restart and stop/start (DEL then ADD again), and a
  # short-lived --rm container whose DEL comes from conmon's cleanup.
  local subnet sip1
  subnet=$(pm network inspect -f '{{range .Subnets}}{{.Subnet}} {{end}}' e2e-net | cut -d' ' -f1)
  sip1=${subnet%.*/*}.50 # a /24 from Podman's pool
  log "e2e-net $subnet, s1 at $sip1"
  pm run -d --name s1 --network e2e-net --ip "$sip1" --network-alias svc "$IMAGE" sleep 3600 >/dev/null
  [ "$(pm_ip s1 e2e-net)" = "$sip1" ] || fail "--ip not honoured: $(pm_ip s1 e2e-net)"
  pm exec a1 ping -c 1 -W 3 svc
  pm exec a1 ping -c 1 -W 3 svc.dns.podman
  pm network create e2e-net2
  pm network connect e2e-net2 s1
  pm exec s1 ip -o addr show dev eth1 >&2
  pm exec s1 ping -c 1 -W 3 "$(pm inspect -f '{{(index .NetworkSettings.Networks "e2e-net2").Gateway}}' s1)"
  pm network disconnect e2e-net2 s1
  ! pm exec s1 ip link show eth1 >/dev/null 2>&1 || fail "eth1 still there after disconnect"
  pm restart -t 0 s1
  [ "$(pm_ip s1 e2e-net)" = "$sip1" ] || fail "address changed across restart"
  # a1 still has s1's old MAC in its ARP cache: the bridge plugin's gratuitous
  # ARP must update it at once.
  pm exec a1 ping -c 1 -W 3 s1
  pm stop -t 0 s1 >/dev/null
  ! pm exec a1 ping -c 1 -W 3 s1 >/dev/null 2>&1 || fail "s1 still resolves/answers while stopped"
  pm start s1 >/dev/null
  pm exec a1 ping -c 1 -W 3 s1
  pm run --rm --network e2e-net "$IMAGE" ping -c 1 -W 3 a1
  # A container that exits by itself: conmon's exit command (podman container
  # cleanup) runs DEL, and the lease is released without any podman rm.
  pm_run short e2e-net "$IMAGE" sleep 1
  local sip
  sip=$(pm_ip short e2e-net)
  leased() { in_ns "$NSP" test -e "/var/lib/cni/networks/e2e-net/$sip"; }
  leased || fail "no lease file for $sip while short runs"
  retry 40 0.25 eval '! leased' || fail "lease $sip kept after the container exited"
  pm rm short >/dev/null
  pm rm -f -t 0 s1 >/dev/null
  pm network rm e2e-net2
}

p_ipv6() {
  pm network create --ipv6 e2e-v6
  pm_run v1 e2e-v6 "$IMAGE" sleep 3600
  pm_run v2 e2e-v6 "$IMAGE" sleep 3600
  local ip6
  ip6=$(pm inspect -f '{{(index .NetworkSettings.Networks "e2e-v6").GlobalIPv6Address}}' v2)
  log "v2 = $(pm_ip v2 e2e-v6) $ip6"
  [ -n "$ip6" ] || fail "no IPv6 address"
  # IPv6: up to two echoes, as the bridge tests allow (a first neighbour
  # solicitation is occasionally lost under heavy load).
  pm exec v1 ping -c 2 -w 6 "$ip6"
  pm exec v1 ping -c 1 -W 3 v2
  pm exec v1 ping6 -c 2 -w 6 v2 # by name, over IPv6: an AAAA record
  pm rm -f -t 0 v1 v2 >/dev/null
  pm network rm e2e-v6
}

# What our plugins may leave in $NSP or in the private state dirs.
leftover_links() { except 'lo|up0|up0p|lan0' "$(links_of "$NSP")"; }
leftover_leases() {
  in_ns "$NSP" find /var/lib/cni/networks -type f ! -name lock ! -name 'last_reserved_ip*' ! -name 'cnirs-index*' 2>/dev/null
}
leftover_state() { in_ns "$NSP" find /run/cni -mindepth 2 2>/dev/null; in_ns "$NSP" find /var/lib/cni/results -mindepth 1 2>/dev/null; }
nft_elements() { nsenter --net="/run/netns/$NSP" -- nft list ruleset | grep -A2 'elements =' || true; }

p_teardown() {
  local names
  mapfile -t names < <(pm ps -a --format '{{.Names}}')
  log "removing containers: ${names[*]}"
  [ ${#names[@]} -eq 0 ] || pm rm -f -t 0 "${names[@]}" >/dev/null
  # Per container: veths, leases, set/map elements and DNS records are gone.
  local l
  l=$(except 'lo|up0|up0p|lan0|cni-podman[0-9]+' "$(links_of "$NSP")")
  [ -z "$l" ] || fail "links left after podman rm: $l"
  l=$(leftover_leases)
  [ -z "$l" ] || fail "leases left after podman rm: $l"
  l=$(nft_elements)
  [ -z "$l" ] || fail "nf_tables elements left after podman rm: $l"
  # Per network: bridges, tables, DNS daemons are gone.
  mapfile -t names < <(pm network ls -q | grep -vx podman)
  log "removing networks: ${names[*]}"
  [ ${#names[@]} -eq 0 ] || pm network rm "${names[@]}" >/dev/null
  l=$(leftover_links)
  [ -z "$l" ] || fail "links left after podman network rm: $l"
  l=$(nsenter --net="/run/netns/$NSP" -- nft list tables)
  [ -z "$l" ] || fail "nf_tables tables left: $l"
  l=$(leftover_leases)
  [ -z "$l" ] || fail "leases left: $l"
  l=$(procs_in_netns "$NSP")
  [ -z "$l" ] || fail "processes left in the host netns: $l"
  l=$(leftover_state)
  [ -z "$l" ] || fail "plugin state left: $l"
  log "links now: $(links_of "$NSP")"
}

podman_scenarios() {
  scenario "podman: setup (runc, capped ulimits, CNI backend, image imported from busybox-static)" p_setup
  PODMAN_READY=$(cat "$WORK/podman-ready" 2>/dev/null || echo 0)
  if [ "$PODMAN_READY" != 1 ] || ! pm image exists "$IMAGE" 2>/dev/null; then
    local s
    for s in "network create" "ping by name" "-p 8080:80" "isolate=true" "macvlan" "rm/network rm"; do
      scenario "podman: $s" p_not_ready
    done
    return 0
  fi
  scenario "podman: network create generates bridge/portmap/firewall/tuning/dnsname (used unmodified)" p_network_create
  scenario "podman: two containers ping each other by name and <name>.dns.podman" p_dns
  scenario "podman: -p 8080:80 busybox httpd fetched from the host (127.0.0.1, uplink) and hairpin" p_port
  scenario "podman: two -o isolate=true networks cannot reach each other" p_isolate
  scenario "podman: macvlan (-o parent=lan0) container reachable from a LAN peer" p_macvlan
  scenario "podman: --ip, --network-alias, connect/disconnect, restart, stop/start, run --rm, exit by itself" p_lifecycle
  scenario "podman: dual-stack network (--ipv6), ping by name over IPv6" p_ipv6
  scenario "podman: rm -f and network rm leave no link, lease, nft table/element, process or state" p_teardown
}
p_not_ready() { skip "podman setup did not complete (see above)"; }
