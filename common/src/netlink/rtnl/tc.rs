//! Traffic control over rtnetlink (`tc qdisc`, `tc filter`): what traffic
//! shaping needs and no more — a token bucket filter (tbf) as a device's root
//! qdisc, the ingress qdisc, and a u32 filter that matches every packet and
//! redirects it to another device (an ifb) with a mirred action.
//!
//! Messages are built as iproute2's `tc` builds them, so the kernel ends up
//! in the state `tc` would leave: the tbf carries the rate table (computed as
//! iproute2 6.1, Debian 12's, computes it) and says its link layer is
//! Ethernet. Times inside qdiscs are in packet-scheduler ticks; [`Clock`]
//! converts, from the kernel's own `/proc/net/psched`.

use std::io;

use super::{ne_u32, payload_of, Rtnl};
use crate::netlink::{Attrs, Msg, NlResult, Reply, NLM_F_CREATE, NLM_F_EXCL};

const TCMSG_LEN: usize = 20;

// linux/pkt_sched.h, linux/pkt_cls.h, linux/tc_act/tc_mirred.h
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RTAB: u16 = 2;
const TCA_TBF_RATE64: u16 = 4;
const TCA_U32_CLASSID: u16 = 1;
const TCA_U32_SEL: u16 = 5;
const TCA_U32_ACT: u16 = 7;
const TC_U32_TERMINAL: u8 = 1;
const TCA_ACT_KIND: u16 = 1;
const TCA_ACT_OPTIONS: u16 = 2;
const TCA_MIRRED_PARMS: u16 = 2;
const TC_LINKLAYER_ETHERNET: u8 = 1;
/// `TC_ACT_STOLEN`: the packet is consumed (redirected), later actions do not see it.
pub const TC_ACT_STOLEN: i32 = 4;
/// `TCA_EGRESS_REDIR`: send the packet out of the target device.
pub const TCA_EGRESS_REDIR: i32 = 1;

/// The root of a device's egress (`tc … root`).
pub const TC_H_ROOT: u32 = 0xFFFF_FFFF;
/// Where the ingress (and clsact) qdisc hangs.
pub const TC_H_INGRESS: u32 = 0xFFFF_FFF1;
/// The ingress qdisc's own handle, `ffff:`.
pub const INGRESS_HANDLE: u32 = 0xFFFF_0000;

/// A tc handle `major:minor` (`1:` is `handle(1, 0)`).
pub const fn handle(major: u16, minor: u16) -> u32 {
    (major as u32) << 16 | minor as u32
}

/// The packet scheduler's clock: qdiscs count time in ticks, and
/// `/proc/net/psched` says how many make a microsecond (15.625 on every
/// kernel with high-resolution timers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clock {
    pub ticks_per_usec: f64,
}

impl Clock {
    /// The running kernel's clock.
    pub fn read() -> io::Result<Clock> {
        let text = std::fs::read_to_string("/proc/net/psched")?;
        Clock::parse(&text).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("unexpected /proc/net/psched: {text:?}"))
        })
    }

    /// Parse `/proc/net/psched` (four hex words: ticks-to-µs, µs-to-ticks,
    /// clock resolution, hz) as iproute2's `tc_core_init` does.
    pub fn parse(text: &str) -> Option<Clock> {
        let mut words = text.split_whitespace().map(|w| u32::from_str_radix(w, 16).ok());
        let (mut t2us, us2t, clock_res) = (words.next()??, words.next()??, words.next()??);
        if us2t == 0 {
            return None;
        }
        // The kernel advertises 1000 for nanosecond resolution, which means 1.
        if clock_res == 1_000_000_000 {
            t2us = us2t;
        }
        let clock_factor = f64::from(clock_res) / 1e6;
        Some(Clock { ticks_per_usec: f64::from(t2us) / f64::from(us2t) * clock_factor })
    }

    /// Microseconds to ticks, truncated (saturating where a tick count
    /// outgrows 32 bits).
    pub fn time2tick(&self, usec: u32) -> u32 {
        (f64::from(usec) * self.ticks_per_usec) as u32
    }

    /// Ticks needed to send `size` bytes at `rate` bytes per second, as
    /// iproute2 6.1's `tc_calc_xmittime` computes them (whole microseconds
    /// first, then ticks).
    pub fn xmittime(&self, rate: u32, size: u32) -> u32 {
        self.time2tick((1e6 * (f64::from(size) / f64::from(rate))) as u32)
    }

    /// iproute2's rate table for a ratespec (`tc_calc_rtable`, MPU 0,
    /// Ethernet, the default MTU of 2047): entry `i` is the time to send
    /// `(i + 1) << cell_log` bytes. Kernels since 3.11 no longer look
    /// packets up in it (they only read it to guess the link layer when the
    /// ratespec does not say); tc sends it, and so do we.
    pub fn rate_table(&self, rate: u32) -> (u8, [u32; 256]) {
        let cell_log = RATE_TABLE_CELL_LOG;
        let mut table = [0u32; 256];
        for (i, t) in table.iter_mut().enumerate() {
            *t = self.xmittime(rate, ((i as u32) + 1) << cell_log);
        }
        (cell_log, table)
    }
}

/// tc's cell size for an MTU of 2047: the smallest `cell_log` with `2047 >> cell_log <= 255`.
const RATE_TABLE_CELL_LOG: u8 = 3;

/// A token bucket filter: traffic leaves at `rate`, bursts up to the
/// bucket's size, and at most `limit` bytes wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tbf {
    /// Bytes per second.
    pub rate: u64,
    /// The bucket, as the time it takes to drain at `rate`, in ticks.
    pub buffer: u32,
    /// Bytes queued at most; more are dropped.
    pub limit: u32,
}

impl Tbf {
    /// `TCA_OPTIONS` of a new tbf, as `tc qdisc add … tbf rate R burst B limit L` sends them
    /// (without `TCA_TBF_BURST`, so the kernel keeps `buffer` exactly as given).
    fn write_options(&self, m: &mut Msg, clock: &Clock) {
        // Rates of 4 GB/s and more travel in TCA_TBF_RATE64; the 32-bit field then says "more".
        let rate32 = u32::try_from(self.rate).unwrap_or(u32::MAX);
        let (cell_log, rtab) = clock.rate_table(rate32);
        let mut parms = [0u8; TBF_QOPT_LEN];
        parms[0] = cell_log;
        parms[1] = TC_LINKLAYER_ETHERNET;
        parms[4..6].copy_from_slice(&(-1i16).to_ne_bytes()); // cell_align
        parms[8..12].copy_from_slice(&rate32.to_ne_bytes());
        // peakrate (12..24) and mtu (32..36) stay 0: no peak rate.
        parms[24..28].copy_from_slice(&self.limit.to_ne_bytes());
        parms[28..32].copy_from_slice(&self.buffer.to_ne_bytes());
        let table: Vec<u8> = rtab.iter().flat_map(|t| t.to_ne_bytes()).collect();
        m.nest(libc::TCA_OPTIONS, |o| {
            o.attr(TCA_TBF_PARMS, &parms);
            if self.rate > u64::from(u32::MAX) {
                o.attr(TCA_TBF_RATE64, &self.rate.to_ne_bytes());
            }
            o.attr(TCA_TBF_RTAB, &table);
        });
    }

    fn parse(options: Attrs<'_>) -> Option<Tbf> {
        let p = options.get(TCA_TBF_PARMS)?.data;
        if p.len() < TBF_QOPT_LEN {
            return None;
        }
        let rate = match options.get(TCA_TBF_RATE64) {
            Some(a) if a.data.len() >= 8 => u64::from_ne_bytes(a.data[..8].try_into().ok()?),
            _ => u64::from(ne_u32(p, 8)),
        };
        Some(Tbf { rate, limit: ne_u32(p, 24), buffer: ne_u32(p, 28) })
    }
}

/// `struct tc_tbf_qopt`: rate and peakrate (`tc_ratespec`, 12 bytes each), limit, buffer, mtu.
const TBF_QOPT_LEN: usize = 36;

/// What a qdisc is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QdiscKind {
    Tbf(Tbf),
    /// The ingress hook (`tc qdisc add dev X ingress`), where filters see
    /// arriving packets.
    Ingress,
    /// Any other kind, by name (listings only).
    Other(String),
}

impl QdiscKind {
    /// The kernel's name of the kind (`TCA_KIND`).
    pub fn name(&self) -> &str {
        match self {
            QdiscKind::Tbf(_) => "tbf",
            QdiscKind::Ingress => "ingress",
            QdiscKind::Other(name) => name,
        }
    }
}

/// A queueing discipline on a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qdisc {
    pub index: u32,
    pub handle: u32,
    /// [`TC_H_ROOT`], [`TC_H_INGRESS`] or a class of another qdisc.
    pub parent: u32,
    pub kind: QdiscKind,
}

impl Qdisc {
    /// A tbf as the root qdisc of `index`, handle `1:`.
    pub fn root_tbf(index: u32, tbf: Tbf) -> Qdisc {
        Qdisc { index, handle: handle(1, 0), parent: TC_H_ROOT, kind: QdiscKind::Tbf(tbf) }
    }

    /// The ingress qdisc of `index` (handle `ffff:`).
    pub fn ingress(index: u32) -> Qdisc {
        Qdisc { index, handle: INGRESS_HANDLE, parent: TC_H_INGRESS, kind: QdiscKind::Ingress }
    }

    fn parse(r: &Reply) -> Option<Qdisc> {
        let p = payload_of(r, libc::RTM_NEWQDISC, TCMSG_LEN)?;
        let attrs = r.attrs(TCMSG_LEN);
        let name = attrs.get(libc::TCA_KIND)?.str();
        let options = attrs.get(libc::TCA_OPTIONS).map(|a| a.nested()).unwrap_or(Attrs::new(&[]));
        let kind = match name {
            "tbf" => Tbf::parse(options).map(QdiscKind::Tbf)?,
            "ingress" => QdiscKind::Ingress,
            other => QdiscKind::Other(other.to_string()),
        };
        Some(Qdisc { index: ne_u32(p, 4), handle: ne_u32(p, 8), parent: ne_u32(p, 12), kind })
    }
}

/// `struct tcmsg`: family, padding, ifindex, handle, parent, info.
fn tcmsg(index: u32, handle: u32, parent: u32, info: u32) -> [u8; TCMSG_LEN] {
    let mut h = [0u8; TCMSG_LEN];
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&handle.to_ne_bytes());
    h[12..16].copy_from_slice(&parent.to_ne_bytes());
    h[16..20].copy_from_slice(&info.to_ne_bytes());
    h
}

pub(super) fn qdisc_msg(ty: u16, flags: u16, q: &Qdisc, clock: Option<&Clock>) -> Msg {
    let mut m = Msg::new(ty, flags);
    m.push(&tcmsg(q.index, q.handle, q.parent, 0)).attr_str(libc::TCA_KIND, q.kind.name());
    if let (QdiscKind::Tbf(tbf), Some(clock)) = (&q.kind, clock) {
        tbf.write_options(&mut m, clock);
    }
    m
}

/// A u32 filter on `parent` of `index` that matches every packet and
/// redirects it out of `target` (mirred egress redirect), as
/// `tc filter add dev X parent P protocol all prio N u32 match u32 0 0
/// flowid C action mirred egress redirect dev T` makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub index: u32,
    pub parent: u32,
    pub prio: u16,
    /// Ethernet protocol, host order (`ETH_P_ALL` for all).
    pub protocol: u16,
    /// The u32 filter's flowid.
    pub classid: u32,
    /// The device packets are sent out of.
    pub target: u32,
}

/// One mirred action of a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mirred {
    /// `TCA_EGRESS_REDIR`, `TCA_EGRESS_MIRROR`, …
    pub eaction: i32,
    pub ifindex: u32,
    /// What happens to the packet afterwards (`TC_ACT_STOLEN`, `TC_ACT_PIPE`, …).
    pub action: i32,
}

/// A filter as the kernel lists it. A u32 filter lists as three entries:
/// its priority (no options), its hash table and the rule itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub index: u32,
    pub parent: u32,
    pub handle: u32,
    pub prio: u16,
    /// Host order.
    pub protocol: u16,
    pub kind: String,
    /// A u32 rule whose every key has mask 0: it matches every packet.
    pub matches_all: bool,
    pub classid: Option<u32>,
    /// The rule's mirred actions, in order.
    pub mirred: Vec<Mirred>,
}

impl Filter {
    /// The device this filter redirects every packet out of, if it does.
    pub fn redirects_all_to(&self) -> Option<u32> {
        let first = self.mirred.first()?;
        (self.matches_all && first.eaction == TCA_EGRESS_REDIR).then_some(first.ifindex)
    }

    pub(super) fn parse(r: &Reply) -> Option<Filter> {
        let p = payload_of(r, libc::RTM_NEWTFILTER, TCMSG_LEN)?;
        let info = ne_u32(p, 16);
        let attrs = r.attrs(TCMSG_LEN);
        let mut f = Filter {
            index: ne_u32(p, 4),
            handle: ne_u32(p, 8),
            parent: ne_u32(p, 12),
            prio: (info >> 16) as u16,
            protocol: u16::from_be(info as u16),
            kind: attrs.get(libc::TCA_KIND)?.str().to_string(),
            matches_all: false,
            classid: None,
            mirred: Vec::new(),
        };
        if f.kind == "u32" {
            if let Some(options) = attrs.get(libc::TCA_OPTIONS) {
                f.parse_u32(options.nested());
            }
        }
        Some(f)
    }

    fn parse_u32(&mut self, options: Attrs<'_>) {
        self.classid = options.get(TCA_U32_CLASSID).map(|a| a.u32());
        if let Some(sel) = options.get(TCA_U32_SEL).map(|a| a.data).filter(|d| d.len() >= U32_SEL_LEN) {
            let keys = &sel[U32_SEL_LEN..];
            let nkeys = usize::from(sel[2]);
            self.matches_all = nkeys > 0
                && keys.len() >= nkeys * U32_KEY_LEN
                && keys.chunks(U32_KEY_LEN).take(nkeys).all(|k| k[..4] == [0, 0, 0, 0]);
        }
        let Some(actions) = options.get(TCA_U32_ACT) else { return };
        let mut actions: Vec<_> = actions.nested().collect();
        actions.sort_by_key(|a| a.ty); // the attribute type is the action's order
        for a in actions {
            let a = a.nested();
            if a.get(TCA_ACT_KIND).map(|k| k.str()) != Some("mirred") {
                continue;
            }
            let parms = a.get(TCA_ACT_OPTIONS).and_then(|o| o.nested().get(TCA_MIRRED_PARMS));
            if let Some(d) = parms.map(|p| p.data).filter(|d| d.len() >= MIRRED_LEN) {
                let action = ne_u32(d, 8) as i32;
                self.mirred.push(Mirred { eaction: ne_u32(d, 20) as i32, ifindex: ne_u32(d, 24), action });
            }
        }
    }
}

/// `struct tc_u32_sel` without its keys, and one `struct tc_u32_key`.
const U32_SEL_LEN: usize = 16;
const U32_KEY_LEN: usize = 16;
/// `struct tc_mirred`: `tc_gen` (index, capab, action, refcnt, bindcnt), eaction, ifindex.
const MIRRED_LEN: usize = 28;

pub(super) fn redirect_msg(f: &Redirect) -> Msg {
    let info = u32::from(f.prio) << 16 | u32::from(f.protocol.to_be());
    let mut m = Msg::new(libc::RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL);
    m.push(&tcmsg(f.index, 0, f.parent, info)).attr_str(libc::TCA_KIND, "u32");
    m.nest(libc::TCA_OPTIONS, |o| {
        o.attr_u32(TCA_U32_CLASSID, f.classid);
        o.nest(TCA_U32_ACT, |acts| {
            acts.nest(1, |act| {
                act.attr_str(TCA_ACT_KIND, "mirred");
                act.nest(TCA_ACT_OPTIONS, |opts| {
                    let mut p = [0u8; MIRRED_LEN];
                    p[8..12].copy_from_slice(&TC_ACT_STOLEN.to_ne_bytes());
                    p[20..24].copy_from_slice(&TCA_EGRESS_REDIR.to_ne_bytes());
                    p[24..28].copy_from_slice(&f.target.to_ne_bytes());
                    opts.attr(TCA_MIRRED_PARMS, &p);
                });
            });
        });
        // One key, mask 0 value 0 at offset 0: every packet matches; terminal: the actions run.
        let mut sel = [0u8; U32_SEL_LEN + U32_KEY_LEN];
        sel[0] = TC_U32_TERMINAL;
        sel[2] = 1;
        o.attr(TCA_U32_SEL, &sel);
    });
    m
}

impl Rtnl {
    /// Add a qdisc; `EEXIST` if the device has one there already.
    pub fn add_qdisc(&mut self, q: &Qdisc) -> NlResult<()> {
        let clock = match q.kind {
            QdiscKind::Tbf(_) => Some(Clock::read()?),
            _ => None,
        };
        self.sock.request(qdisc_msg(libc::RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, q, clock.as_ref()))
    }

    /// Delete the qdisc at `parent` of `index` (its filters go with it);
    /// `ENOENT` (or `EINVAL` for a root without one) if there is none.
    pub fn del_qdisc(&mut self, index: u32, parent: u32) -> NlResult<()> {
        let mut m = Msg::new(libc::RTM_DELQDISC, 0);
        m.push(&tcmsg(index, 0, parent, 0));
        self.sock.request(m)
    }

    /// The qdiscs of one device (or of all with `None`), default ones included.
    pub fn qdiscs(&mut self, index: Option<u32>) -> NlResult<Vec<Qdisc>> {
        let mut m = Msg::new(libc::RTM_GETQDISC, 0);
        m.push(&tcmsg(index.unwrap_or(0), 0, 0, 0));
        let all = self.sock.dump(m)?;
        Ok(all.iter().filter_map(Qdisc::parse).filter(|q| index.is_none_or(|i| i == q.index)).collect())
    }

    /// Add a filter that redirects every packet (see [`Redirect`]).
    pub fn add_redirect(&mut self, f: &Redirect) -> NlResult<()> {
        self.sock.request(redirect_msg(f))
    }

    /// The filters at `parent` of `index` (`EINVAL` when no qdisc is there).
    pub fn filters(&mut self, index: u32, parent: u32) -> NlResult<Vec<Filter>> {
        let mut m = Msg::new(libc::RTM_GETTFILTER, 0);
        m.push(&tcmsg(index, 0, parent, 0));
        Ok(self.sock.dump(m)?.iter().filter_map(Filter::parse).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::as_reply;
    use super::*;

    const PSCHED: &str = "000003e8 00000040 000f4240 3b9aca00\n";

    #[test]
    fn clock_as_tc_core_init_reads_it() {
        assert_eq!(Clock::parse(PSCHED), Some(Clock { ticks_per_usec: 15.625 }));
        // Nanosecond resolution advertises t2us 1000 meaning 1.
        let ns = Clock::parse("000003e8 00000001 3b9aca00 3b9aca00").unwrap();
        assert_eq!(ns.ticks_per_usec, 1000.0);
        assert_eq!(Clock::parse("zz"), None);
        assert_eq!(Clock::parse("1 0 1"), None);
    }

    #[test]
    fn xmittime_truncates_twice_like_iproute2_6_1() {
        let c = Clock::parse(PSCHED).unwrap();
        // 8 bytes at 1.25 MB/s: 6.4 µs → 6 µs → 93.75 ticks → 93.
        assert_eq!(c.xmittime(1_250_000, 8), 93);
        assert_eq!(c.xmittime(1_250_000, 40), 500);
        // Out of 32 bits: saturates.
        assert_eq!(c.xmittime(1, u32::MAX), u32::MAX);
        let (cell_log, t) = c.rate_table(1_250_000);
        assert_eq!(cell_log, 3);
        assert_eq!(&t[..5], &[93, 187, 296, 390, 500]);
        assert_eq!(t[255], c.xmittime(1_250_000, 2048));
    }

    #[test]
    fn tbf_roundtrips_and_big_rates_go_in_rate64() {
        let clock = Clock::parse(PSCHED).unwrap();
        for rate in [1_250_000, u64::from(u32::MAX), u64::from(u32::MAX) + 1, 40_000_000_000] {
            let tbf = Tbf { rate, buffer: 123_456, limit: 7_000 };
            let q = Qdisc::root_tbf(7, tbf);
            let r = as_reply(qdisc_msg(libc::RTM_NEWQDISC, 0, &q, Some(&clock)));
            assert_eq!(Qdisc::parse(&r), Some(q.clone()), "rate {rate}");
            let opts = r.attrs(TCMSG_LEN).get(libc::TCA_OPTIONS).unwrap().nested();
            assert_eq!(opts.get(TCA_TBF_RATE64).is_some(), rate > u64::from(u32::MAX));
            assert_eq!(opts.get(TCA_TBF_RTAB).unwrap().data.len(), 1024);
            let parms = opts.get(TCA_TBF_PARMS).unwrap().data;
            assert_eq!(ne_u32(parms, 8), u32::try_from(rate).unwrap_or(u32::MAX));
            assert_eq!(parms[1], TC_LINKLAYER_ETHERNET);
        }
        let ingress = Qdisc::ingress(3);
        assert_eq!(Qdisc::parse(&as_reply(qdisc_msg(libc::RTM_NEWQDISC, 0, &ingress, None))), Some(ingress));
    }

    #[test]
    fn redirect_roundtrips() {
        let f = Redirect {
            index: 4,
            parent: INGRESS_HANDLE,
            prio: 1,
            protocol: libc::ETH_P_ALL as u16,
            classid: handle(1, 1),
            target: 9,
        };
        let got = Filter::parse(&as_reply(redirect_msg(&f))).unwrap();
        assert_eq!((got.index, got.parent, got.prio, got.protocol), (4, INGRESS_HANDLE, 1, 3));
        assert_eq!((got.kind.as_str(), got.classid, got.matches_all), ("u32", Some(0x10001), true));
        let stolen = Mirred { eaction: TCA_EGRESS_REDIR, ifindex: 9, action: TC_ACT_STOLEN };
        assert_eq!(got.mirred, vec![stolen]);
        assert_eq!(got.redirects_all_to(), Some(9));
    }
}
