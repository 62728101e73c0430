//! overlay's configuration (vni, subnet, gateway, range, mtu, vtepIP, node,
//! etcd endpoints/TLS/prefix/timeout, leaseTTL, ipMasq) and the base64 of
//! etcd's JSON gateway: never a panic; parse → serialize → parse gives the
//! same config; the config as the agent stores and reads it back (its own
//! serde form) is the same; an accepted config's addresses are usable
//! addresses of its subnet; base64 decodes what it encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use overlay::b64;
use overlay::config::Config;

fuzz_target!(|data: &[u8]| {
    let _ = b64::decode(&String::from_utf8_lossy(data));
    assert_eq!(b64::decode(&b64::encode(data)).as_deref(), Some(data));

    let Some(inv) = cni_rs_fuzz::invocation(data) else { return };
    let loaded = Config::load(&inv);
    let again = Config::load(&cni_rs_fuzz::reserialized(&inv));
    cni_rs_fuzz::same_outcome("overlay", &loaded, &again);
    let c = match loaded {
        Ok(c) => c,
        Err(e) => return cni_rs_fuzz::readable(&e),
    };
    let stored: Config = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
    assert_eq!(stored, c);
    for ip in [c.gateway, c.range_start, c.range_end] {
        assert!(c.subnet.contains(&ip) && ip != c.subnet.first() && ip != c.subnet.last(), "{ip} in {c:?}");
    }
    assert!((1..=0xff_ffff).contains(&c.vni));
    let _ = (c.bridge(), c.vxlan(), c.shared());
});
