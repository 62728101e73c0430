//! The limits to apply, from the plugin's own fields or from
//! `runtimeConfig.bandwidth` (the `bandwidth` capability: Kubernetes'
//! `kubernetes.io/ingress-bandwidth` and `egress-bandwidth` annotations),
//! and the token buckets that enforce them.
//!
//! As in the reference: rates are bits per second, bursts bits; keys match
//! ignoring case (containerd's CRI sends `IngressRate`); the plugin's own
//! fields win as soon as one of them is present; a rate needs a burst and a
//! burst a rate; a direction whose rate is 0 is not shaped.

use common::netlink::rtnl::tc::{Clock, Tbf};
use common::spec::{fold_keys, NetConf};
use common::{CniError, Result};
use serde_json::{Map, Value};

const KEYS: [&str; 4] = ["ingressRate", "ingressBurst", "egressRate", "egressBurst"];

/// The reference's queue allowance: 25 ms of traffic at the rate, on top of the burst.
const LATENCY_USEC: f64 = 25_000.0;

/// One direction's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Bits per second.
    pub rate: u64,
    /// Bits.
    pub burst: u64,
}

/// What to shape. Ingress is traffic to the container, egress from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bandwidth {
    pub ingress: Option<Limit>,
    pub egress: Option<Limit>,
}

/// The limits of this request: None when there is nothing to shape (no
/// entry, or every value 0), an error (code 7) when a value is unusable.
pub fn load(conf: &NetConf) -> Result<Option<Bandwidth>> {
    let mut top = conf.raw.clone();
    fold_keys(&mut top, &KEYS);
    let own = top.as_object().filter(|o| KEYS.iter().any(|k| o.contains_key(*k)));
    let entry = match (own, conf.runtime("bandwidth")) {
        (Some(own), _) => own.clone(),
        (None, None | Some(Value::Null)) => return Ok(None),
        (None, Some(Value::Object(rc))) => {
            let mut v = Value::Object(rc.clone());
            fold_keys(&mut v, &KEYS);
            v.as_object().cloned().unwrap_or_default()
        }
        (None, Some(other)) => {
            return Err(CniError::invalid_config(format!(
                "runtimeConfig.bandwidth must be an object with ingressRate, ingressBurst, \
                 egressRate and egressBurst, not {other}"
            )))
        }
    };
    let ingress = limit(&entry, "ingress")?;
    let egress = limit(&entry, "egress")?;
    Ok((ingress.is_some() || egress.is_some()).then_some(Bandwidth { ingress, egress }))
}

fn number(entry: &Map<String, Value>, key: &str, unit: &str) -> Result<u64> {
    match entry.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v.as_u64().ok_or_else(|| {
            CniError::invalid_config(format!(
                "{key} must be a whole number of {unit} from 0 to {}, not {v}",
                u64::MAX
            ))
        }),
    }
}

/// One direction's rate and burst, checked as the reference checks them
/// (and refusing what it would turn into a broken qdisc).
fn limit(entry: &Map<String, Value>, dir: &str) -> Result<Option<Limit>> {
    let (rate_key, burst_key) = (format!("{dir}Rate"), format!("{dir}Burst"));
    let rate = number(entry, &rate_key, "bits per second")?;
    let burst = number(entry, &burst_key, "bits")?;
    let bad = |msg: String| Err(CniError::invalid_config(msg));
    match (rate, burst) {
        (0, 0) => Ok(None),
        (_, 0) => bad(format!("{rate_key} is set, so {burst_key} must be set too")),
        (0, _) => bad(format!("{burst_key} is set, so {rate_key} must be set too")),
        (_, b) if b / 8 >= u64::from(u32::MAX) => {
            bad(format!("{burst_key} cannot be more than 4GB: {b} bits is {} bytes", b / 8))
        }
        (r, _) if r < 8 => bad(format!("{rate_key} must be at least 8 bits per second (one byte), not {r}")),
        (rate, burst) => Ok(Some(Limit { rate, burst })),
    }
}

/// The token buckets that enforce a request's limits, one per shaped direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Buckets {
    pub ingress: Option<Tbf>,
    pub egress: Option<Tbf>,
}

impl Bandwidth {
    /// The buckets at the kernel's clock; code 7 for a burst too small to use.
    pub fn buckets(&self, clock: &Clock) -> Result<Buckets> {
        let bucket = |limit: Option<Limit>, dir: &str| -> Result<Option<Tbf>> {
            let Some(limit) = limit else { return Ok(None) };
            let tbf = limit.tbf(clock);
            limit.check_bucket(dir, &tbf, clock)?;
            Ok(Some(tbf))
        };
        Ok(Buckets { ingress: bucket(self.ingress, "ingress")?, egress: bucket(self.egress, "egress")? })
    }
}

impl Limit {
    /// The token bucket the reference builds for this limit: the rate and
    /// burst in bytes, the bucket as the time the burst lasts at the rate
    /// (whole microseconds, then scheduler ticks), and a queue of the burst
    /// plus 25 ms of traffic. Values that outgrow 32 bits saturate (the
    /// reference wraps them around on amd64 and saturates on arm64).
    pub fn tbf(&self, clock: &Clock) -> Tbf {
        let (rate, burst) = (self.rate / 8, self.burst / 8);
        let usec = (burst as f64 * 1e6 / rate as f64) as u32;
        let queue = (rate as f64 * LATENCY_USEC / 1e6) as u32;
        // burst < 4 GB: checked in `limit`.
        Tbf { rate, buffer: clock.time2tick(usec), limit: queue.saturating_add(burst as u32) }
    }

    /// Refuse a burst the kernel would reject: the bucket, once rounded
    /// to the scheduler's clock, must hold at least one byte at the rate.
    pub fn check_bucket(&self, dir: &str, tbf: &Tbf, clock: &Clock) -> Result<()> {
        let nanos = (f64::from(tbf.buffer) / clock.ticks_per_usec * 1e3).min(f64::from(u32::MAX));
        if nanos * tbf.rate as f64 / 1e9 >= 1.0 {
            return Ok(());
        }
        Err(CniError::invalid_config(format!(
            "{dir}Burst of {} bits is too small for {dir}Rate {}: the kernel's token bucket would hold \
             nothing (raise the burst; it should be at least the interface's MTU)",
            self.burst, self.rate
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(v: Value) -> NetConf {
        let mut base = json!({"cniVersion": "1.0.0", "name": "net", "type": "bandwidth"});
        base.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
        NetConf::parse(base.to_string().as_bytes()).unwrap()
    }

    fn load_v(v: Value) -> Result<Option<Bandwidth>> {
        load(&conf(v))
    }

    const CLOCK: Clock = Clock { ticks_per_usec: 15.625 };

    #[test]
    fn own_fields_or_runtime_config_with_any_case() {
        let got = load_v(json!({"ingressRate": 8000, "ingressBurst": 16000})).unwrap().unwrap();
        assert_eq!(got, Bandwidth { ingress: Some(Limit { rate: 8000, burst: 16000 }), egress: None });
        // Kubernetes through containerd's CRI: capitalized keys.
        let k8s = json!({"runtimeConfig": {"bandwidth": {"IngressRate": 10_000_000, "IngressBurst": 4294967295u64,
                                                         "EgressRate": 20_000_000, "EgressBurst": 4294967295u64}}});
        let got = load_v(k8s).unwrap().unwrap();
        assert_eq!(got.ingress, Some(Limit { rate: 10_000_000, burst: 4294967295 }));
        assert_eq!(got.egress, Some(Limit { rate: 20_000_000, burst: 4294967295 }));
        // The plugin's own fields win as soon as one is there, even 0.
        let both =
            json!({"egressRate": 0, "runtimeConfig": {"bandwidth": {"ingressRate": 8, "ingressBurst": 8}}});
        assert_eq!(load_v(both).unwrap(), None);
        let both = json!({"EGRESSRATE": 800, "egressburst": 900,
                          "runtimeConfig": {"bandwidth": {"ingressRate": 8, "ingressBurst": 8}}});
        assert_eq!(
            load_v(both).unwrap().unwrap(),
            Bandwidth { ingress: None, egress: Some(Limit { rate: 800, burst: 900 }) }
        );
        // The exact spelling wins over another case.
        let dup = json!({"ingressRate": 800, "INGRESSRATE": 5, "ingressBurst": 900});
        assert_eq!(load_v(dup).unwrap().unwrap().ingress, Some(Limit { rate: 800, burst: 900 }));
    }

    #[test]
    fn nothing_to_shape() {
        for v in [
            json!({}),
            json!({"runtimeConfig": {}}),
            json!({"runtimeConfig": {"bandwidth": null}}),
            json!({"runtimeConfig": {"bandwidth": {}}}),
            json!({"ingressRate": 0, "ingressBurst": 0, "egressRate": null}),
        ] {
            assert_eq!(load_v(v.clone()).unwrap(), None, "{v}");
        }
    }

    #[test]
    fn bad_values_are_code_7_naming_the_field() {
        for (v, want) in [
            (json!({"ingressRate": 1000}), "ingressRate is set, so ingressBurst must be set too"),
            (json!({"egressBurst": 1000}), "egressBurst is set, so egressRate must be set too"),
            (
                json!({"ingressRate": -1, "ingressBurst": 8}),
                "ingressRate must be a whole number of bits per second",
            ),
            (json!({"ingressRate": 1.5, "ingressBurst": 8}), "not 1.5"),
            (json!({"egressRate": "1M", "egressBurst": 8}), "egressRate must be a whole number"),
            (
                json!({"egressRate": 8, "egressBurst": 1e30}),
                "egressBurst must be a whole number of bits from 0",
            ),
            (json!({"ingressRate": 8, "ingressBurst": 34359738360u64}), "cannot be more than 4GB"),
            (json!({"ingressRate": 7, "ingressBurst": 80}), "at least 8 bits per second"),
            (json!({"runtimeConfig": {"bandwidth": "10M"}}), "runtimeConfig.bandwidth must be an object"),
            (json!({"runtimeConfig": {"Bandwidth": {"EgressBurst": 8}}}), "egressBurst is set"),
        ] {
            let e = load_v(v.clone()).unwrap_err();
            assert_eq!(e.code, 7, "{v}");
            assert!(e.msg.contains(want), "{v}: {}", e.msg);
        }
        // The largest burst the reference takes: 8 * (2^32 - 1) - 1 bits.
        let max = json!({"ingressRate": 8, "ingressBurst": 34359738359u64});
        assert!(load_v(max).unwrap().is_some());
    }

    #[test]
    fn token_bucket_as_the_reference_computes_it() {
        // 10 Mbit/s, 1.25 MB burst: 1 s of traffic; queue 31250 bytes + the burst.
        let l = Limit { rate: 10_000_000, burst: 10_000_000 };
        assert_eq!(l.tbf(&CLOCK), Tbf { rate: 1_250_000, buffer: 15_625_000, limit: 1_281_250 });
        // Kubernetes' default burst at 20 Mbit/s: 214748364 µs, 3355443187 ticks (fits 32 bits).
        let k8s = Limit { rate: 20_000_000, burst: 4294967295 };
        assert_eq!(k8s.tbf(&CLOCK), Tbf { rate: 2_500_000, buffer: 3_355_443_187, limit: 536_933_411 });
        // At 10 Mbit/s it does not: saturated, where the reference on amd64 wraps to 2415919079.
        let k8s = Limit { rate: 10_000_000, burst: 4294967295 };
        assert_eq!(k8s.tbf(&CLOCK).buffer, u32::MAX);
        // The queue saturates too instead of wrapping to a few bytes.
        let huge = Limit { rate: 8_000_000_000, burst: 34359738359 };
        assert_eq!(huge.tbf(&CLOCK).limit, u32::MAX);
        // Rates of 4 GB/s and more stay whole.
        assert_eq!(Limit { rate: 40_000_000_000, burst: 8_000_000 }.tbf(&CLOCK).rate, 5_000_000_000);
    }

    #[test]
    fn a_bucket_that_holds_nothing_is_refused() {
        // 1 byte at 1 Gbit/s lasts 8 ns: less than a microsecond, so 0 ticks.
        let l = Limit { rate: 1_000_000_000, burst: 8 };
        let e = l.check_bucket("ingress", &l.tbf(&CLOCK), &CLOCK).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(
            e.msg.contains("ingressBurst of 8 bits is too small for ingressRate 1000000000"),
            "{}",
            e.msg
        );
        // 12 bytes at 100 Mbit/s last 0.96 µs: nothing; 25 bytes 2 µs, which hold 24 bytes.
        let short = Limit { rate: 100_000_000, burst: 96 };
        assert!(short.check_bucket("egress", &short.tbf(&CLOCK), &CLOCK).is_err());
        let ok = Limit { rate: 100_000_000, burst: 200 };
        ok.check_bucket("egress", &ok.tbf(&CLOCK), &CLOCK).unwrap();
    }
}
