#![cfg_attr(not(test), no_main)]
//! `dns-sidecar` (also installed as `dnsname`): containers on a CNI network
//! find each other by name.
//!
//! One binary, two roles:
//! - **CNI plugin** (`CNI_COMMAND` set): chained after bridge, it records the
//!   container's names and addresses for its network and makes sure that
//!   network's DNS server runs and has them before ADD returns.
//! - **Daemon** (`dns-sidecar serve <network>`, started by the plugin):
//!   answers A, AAAA and PTR for the network's containers and forwards the
//!   rest to the upstream servers of /etc/resolv.conf.
//!
//! Design decisions:
//! - **One daemon per network.** It listens only on that network's gateway
//!   addresses (port 53, UDP and TCP), serves only that network's names and
//!   answers REFUSED to clients outside the network's subnets — isolation by
//!   construction, no per-source scoping tables, and one network's churn
//!   never touches another's server. It exits when the last container of its
//!   network leaves (DEL/GC stop it and remove its state).
//! - **Updates are pushed, not signalled.** ADD/DEL write the records file
//!   atomically under the network's flock, then send `reload` on the
//!   daemon's control socket and wait for its acknowledgement: the daemon
//!   builds a new table and swaps it in while its sockets stay open, so a
//!   name resolves the moment ADD returns, is gone the moment DEL returns,
//!   and no query is lost meanwhile (aardvark-dns re-created sockets on
//!   SIGHUP and lost queries; dnsname's SIGHUP left a window).
//! - **Liveness is a flock**, held by the daemon for its whole life: no stale
//!   pidfile can pass for a live server. ADD starts a dead daemon again
//!   (CHECK fails, as dnsname's does); two ADDs cannot start two (network
//!   lock + daemon lock).
//! - **Names**: `K8S_POD_NAME`, the aliases for this network
//!   (`runtimeConfig.aliases`, Podman's map or a list) and the short
//!   container ID, each answered bare and under `domainName`. Unknown names
//!   under the domain are NXDOMAIN; other unknown names are forwarded (like
//!   aardvark-dns). Reverse names of addresses in our subnets that no
//!   container holds are NXDOMAIN (private addresses do not leak upstream).
//!   Our answers have TTL 0 (as dnsmasq and aardvark-dns).
//! - **Speed**: a hand-written decoder/encoder (wire.rs) on batched
//!   `recvmmsg`/`sendmmsg`; a thread per listen address; forwarded answers
//!   relayed as raw bytes and cached for their TTL.
//! - **Forwarding resists forged answers**: each try of each forwarded
//!   query has a socket of its own on a random source port, connected to
//!   the server asked, and a random ID; the answer must match the question.
//! - **No netfilter rules**: the daemon binds the gateway addresses in the
//!   host netns, which bridge traffic reaches through INPUT; a host whose
//!   input policy drops DNS must accept it (see README).
//!
//! Test knobs (environment): `DNS_SIDECAR_RUN_DIR` (state root, default
//! /run/cni/dns-sidecar), `DNS_SIDECAR_PORT` (default 53),
//! `DNS_SIDECAR_RESOLV_CONF` (default /etc/resolv.conf).

// No Rust runtime set-up before main (see common::plugin_main!): the plugin
// role is exec'd once per operation and starts faster without it.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let mut args = std::env::args_os().skip(1);
    if std::env::var_os("CNI_COMMAND").is_none() {
        if let Some(a) = args.next() {
            if a == "serve" {
                // The daemon writes to TCP clients that may have gone: a write
                // error, not a fatal signal (Rust's usual runtime would do this).
                // SAFETY: setting a signal disposition before any thread exists.
                unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
                let network = args.next().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                std::process::exit(dns_sidecar::server::serve(&network));
            }
        }
    }
    common::skel::run(&dns_sidecar::plugin::DnsSidecar)
}
