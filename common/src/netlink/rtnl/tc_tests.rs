//! Traffic control against the real kernel, in namespaces of their own:
//! what we create is what `tc -j` shows, what `tc` creates we read back, and
//! a tbf request carries the bytes `tc` itself sends (captured with strace).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use super::tc::*;
use super::tests::TestNs;
use super::{as_reply, Reply};
use crate::netlink::{Attrs, NLMSG_HDRLEN};

const TCMSG_LEN: usize = 20;

fn run(t: &TestNs, tool: &str, args: &str) -> std::process::Output {
    let out = Command::new(tool).args(["-n", &t.name]).args(args.split_whitespace()).output().unwrap();
    assert!(out.status.success(), "{tool} {args}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `tc -j -raw ARGS` (raw: the tbf's buffer in ticks and its limit are shown too).
fn tc_json(t: &TestNs, args: &str) -> Value {
    serde_json::from_slice(&run(t, "tc", &format!("-j -raw {args}")).stdout).unwrap()
}

fn index(t: &TestNs, name: &str) -> u32 {
    t.rtnl().link_by_name(name).unwrap().index
}

/// A veth pair `a`/`b`, up, in `t`.
fn veth(t: &TestNs, a: &str, b: &str) -> u32 {
    run(t, "ip", &format!("link add {a} type veth peer name {b}"));
    run(t, "ip", &format!("link set {a} up"));
    index(t, a)
}

#[test]
fn root_tbf_as_tc_shows_it_and_deletion() {
    let Some(t) = TestNs::new() else { return };
    let mut r = t.rtnl();
    let clock = Clock::read().unwrap();
    for (dev, rate) in [("a0", 1_250_000u64), ("b0", 5_000_000_000)] {
        let i = veth(&t, dev, &format!("{dev}p"));
        let tbf = Tbf { rate, buffer: clock.time2tick(200_000), limit: 1_500_000 };
        r.add_qdisc(&Qdisc::root_tbf(i, tbf)).unwrap();
        assert_eq!(r.add_qdisc(&Qdisc::root_tbf(i, tbf)).unwrap_err().errno, libc::EEXIST);
        let j = &tc_json(&t, &format!("qdisc show dev {dev}"))[0];
        assert_eq!(
            (j["kind"].as_str(), j["handle"].as_str(), j["root"].as_bool()),
            (Some("tbf"), Some("1:"), Some(true))
        );
        let o = &j["options"];
        assert_eq!(o["rate"].as_u64(), Some(rate), "{j}");
        assert_eq!(o["limit"].as_u64(), Some(1_500_000), "{j}");
        assert_eq!(o["burst_raw"].as_str(), Some(format!("{:x}", tbf.buffer).as_str()), "{j}");
        assert_eq!(r.qdiscs(Some(i)).unwrap(), vec![Qdisc::root_tbf(i, tbf)]);
        r.del_qdisc(i, TC_H_ROOT).unwrap();
        assert_eq!(tc_json(&t, &format!("qdisc show dev {dev}"))[0]["kind"], "noqueue");
        assert!(r.del_qdisc(i, TC_H_ROOT).is_err(), "nothing left to delete");
    }
}

/// The netlink messages `tc ARGS` sends in `t`, from strace's hex dump.
fn sent_by_tc(t: &TestNs, args: &str) -> Vec<Vec<u8>> {
    let log = tempfile_path("strace");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &t.name,
            "strace",
            "-e",
            "trace=sendmsg",
            "-e",
            "write=all",
            "-o",
            &log,
            "tc",
        ])
        .args(args.split_whitespace())
        .output()
        .unwrap();
    assert!(out.status.success(), "tc {args}: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let mut msgs = Vec::new();
    for line in text.lines() {
        if line.contains("bytes in buffer") {
            msgs.push(Vec::new());
        } else if let (Some(m), Some(hex)) =
            (msgs.last_mut(), line.strip_prefix(" | ").and_then(|l| l.get(7..56)))
        {
            m.extend(hex.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()));
        }
    }
    msgs
}

fn tempfile_path(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("/tmp/cni-rtnl-tc-{what}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The request as the kernel would see it, without the netlink header.
fn as_request(bytes: &[u8]) -> Reply {
    let ty = u16::from_ne_bytes([bytes[4], bytes[5]]);
    Reply { ty, flags: 0, payload: bytes[NLMSG_HDRLEN..].to_vec() }
}

fn options(r: &Reply) -> Vec<(u16, Vec<u8>)> {
    let o = r.attrs(TCMSG_LEN).get(libc::TCA_OPTIONS).unwrap();
    Attrs::new(o.data).map(|a| (a.ty, a.data.to_vec())).collect()
}

#[test]
fn tbf_request_carries_what_tc_sends() {
    let Some(t) = TestNs::new() else { return };
    let clock = Clock::read().unwrap();
    // (rate in bits/s, burst and limit in bytes): plain, odd sizes, a 64-bit rate.
    for (n, (bits, burst, limit)) in [
        (10_000_000u64, 1_250_000u32, 1_500_000u32),
        (8_000, 1_600, 2_000),
        (40_000_000_000, 65_536, 5_000_000),
    ]
    .into_iter()
    .enumerate()
    {
        let dev = format!("t{n}");
        let i = veth(&t, &dev, &format!("{dev}p"));
        let args =
            format!("qdisc add dev {dev} root handle 1: tbf rate {bits}bit burst {burst} limit {limit}");
        let theirs = sent_by_tc(&t, &args);
        let theirs = theirs.iter().map(|m| as_request(m)).find(|r| r.ty == libc::RTM_NEWQDISC).unwrap();
        let rate = bits / 8;
        // tc works out the bucket from the 32-bit rate field, as it does the table.
        let buffer = clock.xmittime(u32::try_from(rate).unwrap_or(u32::MAX), burst);
        let ours = Qdisc::root_tbf(i, Tbf { rate, buffer, limit });
        let ours = as_reply(super::tc::qdisc_msg(libc::RTM_NEWQDISC, 0, &ours, Some(&clock)));
        assert_eq!(ours.payload[..TCMSG_LEN], theirs.payload[..TCMSG_LEN], "tcmsg of {args}");
        // tc also sends TCA_TBF_BURST (6); we leave it out so that the kernel
        // keeps the bucket exactly as given (see Tbf::write_options).
        let theirs: Vec<_> = options(&theirs).into_iter().filter(|(ty, _)| *ty != 6).collect();
        assert_eq!(options(&ours), theirs, "TCA_OPTIONS of {args}");
    }
}

#[test]
fn ingress_and_redirect_as_tc_shows_them_and_tc_made_ones_read_back() {
    let Some(t) = TestNs::new() else { return };
    let mut r = t.rtnl();
    let (i, other) = (veth(&t, "v0", "v1"), index(&t, "v1"));
    run(&t, "ip", "link add ifb0 type ifb");
    let ifb = index(&t, "ifb0");
    r.add_qdisc(&Qdisc::ingress(i)).unwrap();
    let f = Redirect {
        index: i,
        parent: INGRESS_HANDLE,
        prio: 1,
        protocol: libc::ETH_P_ALL as u16,
        classid: handle(1, 1),
        target: ifb,
    };
    r.add_redirect(&f).unwrap();
    let q = tc_json(&t, "qdisc show dev v0 ingress");
    assert_eq!((q[0]["kind"].as_str(), q[0]["parent"].as_str()), (Some("ingress"), Some("ffff:fff1")), "{q}");
    assert!(r.qdiscs(Some(i)).unwrap().contains(&Qdisc::ingress(i)));
    let j = tc_json(&t, "filter show dev v0 ingress");
    let rule = j.as_array().unwrap().iter().find(|e| e["options"]["actions"].is_array()).unwrap();
    assert_eq!(
        (rule["protocol"].as_str(), rule["pref"].as_u64(), rule["kind"].as_str()),
        (Some("all"), Some(1), Some("u32"))
    );
    let o = &rule["options"];
    assert_eq!(
        (o["flowid"].as_str(), o["match"]["value"].as_str(), o["match"]["mask"].as_str()),
        (Some("1:1"), Some("0"), Some("0"))
    );
    let a = &o["actions"];
    assert_eq!(a.as_array().unwrap().len(), 1, "{a}");
    assert_eq!((a[0]["kind"].as_str(), a[0]["mirred_action"].as_str()), (Some("mirred"), Some("redirect")));
    assert_eq!((a[0]["direction"].as_str(), a[0]["to_dev"].as_str()), (Some("egress"), Some("ifb0")));
    assert_eq!(a[0]["control_action"]["type"], "stolen");
    let ours = r.filters(i, INGRESS_HANDLE).unwrap();
    let rules: Vec<_> = ours.iter().filter(|f| !f.mirred.is_empty()).collect();
    assert_eq!(rules.len(), 1, "{ours:?}");
    assert_eq!((rules[0].redirects_all_to(), rules[0].classid, rules[0].prio), (Some(ifb), Some(0x10001), 1));

    // The request is the one tc sends for the same filter.
    let args = "filter add dev v1 parent ffff: protocol all prio 1 u32 match u32 0 0 flowid 1:1 \
                action mirred egress redirect dev ifb0";
    run(&t, "tc", "qdisc add dev v1 ingress");
    let sent = sent_by_tc(&t, args);
    let theirs = sent.iter().map(|m| as_request(m)).find(|r| r.ty == libc::RTM_NEWTFILTER).unwrap();
    let mine = as_reply(super::tc::redirect_msg(&Redirect { index: other, ..f }));
    assert_eq!(mine.payload[..TCMSG_LEN], theirs.payload[..TCMSG_LEN]);
    assert_eq!(Filter::parse(&mine), Filter::parse(&theirs));
    // …and what tc made reads back the same; a filter on one address does not match all.
    run(&t, "tc", "filter add dev v1 parent ffff: protocol ip prio 2 u32 match ip dst 10.0.0.1/32 flowid 1:1 action mirred egress redirect dev ifb0");
    let made = r.filters(other, INGRESS_HANDLE).unwrap();
    let made: Vec<_> = made.iter().filter(|f| !f.mirred.is_empty()).collect();
    assert_eq!(made.len(), 2, "{made:?}");
    assert_eq!((made[0].redirects_all_to(), made[0].protocol), (Some(ifb), libc::ETH_P_ALL as u16));
    assert_eq!(
        (made[1].redirects_all_to(), made[1].protocol, made[1].prio),
        (None, libc::ETH_P_IP as u16, 2)
    );
    assert_eq!(made[1].mirred[0].ifindex, ifb);

    // Deleting the ingress qdisc takes its filters along.
    r.del_qdisc(i, TC_H_INGRESS).unwrap();
    assert_eq!(tc_json(&t, "qdisc show dev v0 ingress"), Value::Array(vec![]));
    assert!(r.filters(i, INGRESS_HANDLE).map_or(true, |f| f.is_empty()));
    assert!(!r.qdiscs(Some(i)).unwrap().iter().any(|q| q.kind == QdiscKind::Ingress));
}
