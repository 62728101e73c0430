//! etcd v3 through its JSON gateway (`/v3/kv/*`, `/v3/lease/*`,
//! `/v3/watch`), over ureq's small synchronous HTTP client. Keys and values
//! travel base64-encoded; 64-bit numbers as JSON strings.
//!
//! Every request tries the endpoints in turn, starting with the one that
//! answered last: a member that is down, or cannot serve (no quorum, no
//! leader), hands the request to the next. "Nobody could answer" is
//! [`EtcdError::Unavailable`] — the plugin's code 11, try again later.

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::CniError;
use serde_json::{json, Value};

use crate::b64;
use crate::config::EtcdConf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdError {
    /// No endpoint answered, or none could serve the request.
    Unavailable(String),
    /// The cluster answered with an error.
    Refused { code: i64, message: String },
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdError::Unavailable(m) => write!(f, "etcd is unavailable: {m}"),
            EtcdError::Refused { code, message } => {
                write!(f, "etcd refused the request: {message} (code {code})")
            }
        }
    }
}

impl EtcdError {
    /// As a CNI error: unavailable is "try again later" (11).
    pub fn cni(&self, what: &str) -> CniError {
        match self {
            EtcdError::Unavailable(_) => CniError::try_again(format!("{what}: {self}")),
            EtcdError::Refused { .. } => CniError::internal(format!("{what}: {self}")),
        }
    }
}

pub type EtcdResult<T> = std::result::Result<T, EtcdError>;

/// One key-value as etcd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

impl Kv {
    fn parse(v: &Value) -> Option<Kv> {
        Some(Kv {
            key: String::from_utf8(b64::decode(v.get("key")?.as_str()?)?).ok()?,
            value: v.get("value").and_then(Value::as_str).and_then(b64::decode).unwrap_or_default(),
            create_revision: int(v.get("create_revision")),
            mod_revision: int(v.get("mod_revision")),
            lease: int(v.get("lease")),
        })
    }
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(Kv),
    Delete(String),
}

/// One message of a watch stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchMsg {
    pub revision: i64,
    pub events: Vec<Event>,
    /// The watch ended (e.g. its start revision was compacted): resync.
    pub canceled: bool,
}

/// proto3 JSON: int64 as a string, absent when zero.
fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn revision_of(v: &Value) -> i64 {
    int(v.get("header").and_then(|h| h.get("revision")))
}

/// The end of the range of every key starting with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Result of a create-if-absent transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Ours, at this revision (its create_revision).
    Done(i64),
    /// Somebody's already: the existing key.
    Exists(Kv),
}

pub struct Etcd {
    endpoints: Vec<String>,
    agent: ureq::Agent,
    timeout: Duration,
    preferred: AtomicUsize,
}

impl Etcd {
    pub fn new(conf: &EtcdConf) -> common::Result<Etcd> {
        let timeout = Duration::from_millis(conf.timeout_ms);
        let mut cfg = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(1))))
            .http_status_as_error(false)
            .max_idle_connections_per_host(2);
        if conf.ca_file.is_some() || conf.cert_file.is_some() {
            cfg = cfg.tls_config(tls_config(conf)?);
        }
        Ok(Etcd {
            endpoints: conf.endpoints.iter().map(|e| e.trim_end_matches('/').to_string()).collect(),
            agent: cfg.build().into(),
            timeout,
            preferred: AtomicUsize::new(0),
        })
    }

    pub fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }

    /// POST `body` to `path` on the first endpoint that can serve it.
    fn call(&self, path: &str, body: &Value) -> EtcdResult<Value> {
        let n = self.endpoints.len();
        let first = self.preferred();
        let body = body.to_string();
        let mut why = Vec::new();
        for i in 0..n {
            let idx = (first + i) % n;
            let url = format!("{}{path}", self.endpoints[idx]);
            match self.post(&url, &body) {
                Ok(v) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(EtcdError::Unavailable(m)) => why.push(format!("{}: {m}", self.endpoints[idx])),
                Err(e) => return Err(e),
            }
        }
        Err(EtcdError::Unavailable(why.join("; ")))
    }

    fn post(&self, url: &str, body: &str) -> EtcdResult<Value> {
        let mut resp = self
            .agent
            .post(url)
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| EtcdError::Unavailable(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().map_err(|e| EtcdError::Unavailable(e.to_string()))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| EtcdError::Unavailable(format!("not an etcd answer (HTTP {status}): {e}")))?;
        if status == 200 && v.get("error").is_none() {
            return Ok(v);
        }
        let code = int(v.get("code"));
        let message = v.get("message").or(v.get("error")).and_then(Value::as_str).unwrap_or("").to_string();
        // gRPC Unavailable (14) and DeadlineExceeded (4): this member cannot
        // serve now (no leader, no quorum); another may.
        if code == 14 || code == 4 || status == 503 {
            return Err(EtcdError::Unavailable(format!("{message} (code {code})")));
        }
        Err(EtcdError::Refused { code, message })
    }

    /// Every key under `prefix` (values omitted with `keys_only`), and the
    /// store revision they were read at.
    pub fn range_prefix(&self, prefix: &str, keys_only: bool) -> EtcdResult<(i64, Vec<Kv>)> {
        let body = json!({"key": b64::encode(prefix.as_bytes()), "range_end": b64::encode(&prefix_end(prefix)),
            "keys_only": keys_only});
        let v = self.call("/v3/kv/range", &body)?;
        let kvs = v.get("kvs").and_then(Value::as_array).map(|a| a.iter().filter_map(Kv::parse).collect());
        Ok((revision_of(&v), kvs.unwrap_or_default()))
    }

    pub fn get(&self, key: &str) -> EtcdResult<Option<Kv>> {
        let v = self.call("/v3/kv/range", &json!({"key": b64::encode(key.as_bytes())}))?;
        Ok(v.get("kvs").and_then(Value::as_array).and_then(|a| a.first()).and_then(Kv::parse))
    }

    /// Create `key` only if it does not exist (create_revision == 0).
    pub fn create(&self, key: &str, value: &[u8], lease: i64) -> EtcdResult<Created> {
        let k = b64::encode(key.as_bytes());
        let mut put = json!({"key": k, "value": b64::encode(value)});
        if lease != 0 {
            put["lease"] = json!(lease.to_string());
        }
        let body = json!({
            "compare": [{"key": k, "target": "CREATE", "create_revision": "0", "result": "EQUAL"}],
            "success": [{"request_put": put}],
            "failure": [{"request_range": {"key": k}}],
        });
        let v = self.call("/v3/kv/txn", &body)?;
        if v.get("succeeded").and_then(Value::as_bool) == Some(true) {
            return Ok(Created::Done(revision_of(&v)));
        }
        let existing = v
            .pointer("/responses/0/response_range/kvs/0")
            .and_then(Kv::parse)
            .ok_or_else(|| EtcdError::Unavailable("transaction failed but the key is absent".into()))?;
        Ok(Created::Exists(existing))
    }

    /// Put unconditionally (under `lease` when not 0).
    pub fn put(&self, key: &str, value: &[u8], lease: i64) -> EtcdResult<i64> {
        let mut body = json!({"key": b64::encode(key.as_bytes()), "value": b64::encode(value)});
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        Ok(revision_of(&self.call("/v3/kv/put", &body)?))
    }

    /// Delete `key` if it is still the version we know: `CREATE` or `MOD`
    /// revision equal to `revision`. False when it is gone or changed.
    pub fn delete_if(&self, key: &str, target: &str, revision: i64) -> EtcdResult<bool> {
        let k = b64::encode(key.as_bytes());
        let field = if target == "CREATE" { "create_revision" } else { "mod_revision" };
        let body = json!({
            "compare": [{"key": k, "target": target, field: revision.to_string(), "result": "EQUAL"}],
            "success": [{"request_delete_range": {"key": k}}],
        });
        let v = self.call("/v3/kv/txn", &body)?;
        let deleted = v.pointer("/responses/0/response_delete_range/deleted");
        Ok(v.get("succeeded").and_then(Value::as_bool) == Some(true) && int(deleted) > 0)
    }

    pub fn lease_grant(&self, ttl: u32) -> EtcdResult<i64> {
        let v = self.call("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))?;
        match int(v.get("ID")) {
            0 => Err(EtcdError::Refused { code: 0, message: "lease grant returned no ID".into() }),
            id => Ok(id),
        }
    }

    /// Renew a lease; its remaining TTL, 0 when the lease no longer exists.
    pub fn lease_keepalive(&self, id: i64) -> EtcdResult<i64> {
        let v = self.call("/v3/lease/keepalive", &json!({"ID": id.to_string()}))?;
        Ok(int(v.pointer("/result/TTL")))
    }

    pub fn lease_revoke(&self, id: i64) -> EtcdResult<()> {
        match self.call("/v3/lease/revoke", &json!({"ID": id.to_string()})) {
            Err(EtcdError::Refused { code: 5, .. }) => Ok(()), // already gone
            r => r.map(drop),
        }
    }

    /// Watch every key under `prefix` from `start_revision` on. The stream
    /// fails when nothing arrived for `idle` (so a dead member is noticed).
    pub fn watch(&self, prefix: &str, start_revision: i64, idle: Duration) -> EtcdResult<Watch> {
        let body = json!({"create_request": {"key": b64::encode(prefix.as_bytes()),
            "range_end": b64::encode(&prefix_end(prefix)), "start_revision": start_revision.to_string()}})
        .to_string();
        let n = self.endpoints.len();
        let first = self.preferred();
        let mut why = Vec::new();
        for i in 0..n {
            let idx = (first + i) % n;
            let url = format!("{}/v3/watch", self.endpoints[idx]);
            let sent = self
                .agent
                .post(&url)
                .config()
                .timeout_global(None)
                .timeout_recv_response(Some(self.timeout))
                .timeout_per_read(Some(idle))
                .build()
                .header("content-type", "application/json")
                .send(&body);
            match sent {
                Ok(resp) if resp.status().as_u16() == 200 => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    let mut w = Watch { lines: BufReader::new(Box::new(resp.into_body().into_reader())) };
                    // The first message confirms the watch.
                    let created = w.next_value()?;
                    if created.pointer("/result/created").and_then(Value::as_bool) != Some(true) {
                        why.push(format!("{}: watch not created: {created}", self.endpoints[idx]));
                        continue;
                    }
                    return Ok(w);
                }
                Ok(resp) => why.push(format!("{}: HTTP {}", self.endpoints[idx], resp.status())),
                Err(e) => why.push(format!("{}: {e}", self.endpoints[idx])),
            }
        }
        Err(EtcdError::Unavailable(why.join("; ")))
    }
}

/// An open watch stream: one JSON message per line.
pub struct Watch {
    lines: BufReader<Box<dyn Read + Send>>,
}

impl Watch {
    fn next_value(&mut self) -> EtcdResult<Value> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.lines.read_line(&mut line) {
                Ok(0) => return Err(EtcdError::Unavailable("watch stream closed".into())),
                Ok(_) if line.trim().is_empty() => continue,
                Ok(_) => {
                    return serde_json::from_str(line.trim())
                        .map_err(|e| EtcdError::Unavailable(format!("bad watch message: {e}")))
                }
                Err(e) => return Err(EtcdError::Unavailable(format!("watch: {e}"))),
            }
        }
    }

    /// The next batch of changes (blocks until one comes or the stream fails).
    pub fn next(&mut self) -> EtcdResult<WatchMsg> {
        let v = self.next_value()?;
        parse_watch(&v)
    }
}

fn parse_watch(v: &Value) -> EtcdResult<WatchMsg> {
    if let Some(err) = v.get("error") {
        return Err(EtcdError::Unavailable(format!("watch: {err}")));
    }
    let r = v.get("result").unwrap_or(&Value::Null);
    let mut msg = WatchMsg {
        revision: revision_of(r),
        canceled: r.get("canceled").and_then(Value::as_bool).unwrap_or(false),
        events: Vec::new(),
    };
    for e in r.get("events").and_then(Value::as_array).into_iter().flatten() {
        let Some(kv) = e.get("kv").and_then(Kv::parse) else { continue };
        if e.get("type").and_then(Value::as_str) == Some("DELETE") {
            msg.events.push(Event::Delete(kv.key));
        } else {
            msg.events.push(Event::Put(kv));
        }
    }
    Ok(msg)
}

fn tls_config(conf: &EtcdConf) -> common::Result<ureq::tls::TlsConfig> {
    use ureq::tls::{parse_pem, ClientCert, PemItem, RootCerts, TlsConfig};
    let read = |p: &std::path::Path| {
        std::fs::read(p)
            .map_err(|e| CniError::invalid_config(format!("overlay: etcd: reading {}: {e}", p.display())))
    };
    let bad_pem = |p: &std::path::Path, e: ureq::Error| {
        CniError::invalid_config(format!("overlay: etcd: {} is not valid PEM: {e}", p.display()))
    };
    let mut b = TlsConfig::builder();
    if let Some(ca) = &conf.ca_file {
        let mut certs = Vec::new();
        for item in parse_pem(&read(ca)?) {
            if let PemItem::Certificate(c) = item.map_err(|e| bad_pem(ca, e))? {
                certs.push(c);
            }
        }
        if certs.is_empty() {
            return Err(CniError::invalid_config(format!(
                "overlay: etcd: no certificate in {}",
                ca.display()
            )));
        }
        b = b.root_certs(RootCerts::new_with_certs(&certs));
    }
    if let (Some(cert), Some(key)) = (&conf.cert_file, &conf.key_file) {
        let mut chain = Vec::new();
        for item in parse_pem(&read(cert)?) {
            if let PemItem::Certificate(c) = item.map_err(|e| bad_pem(cert, e))? {
                chain.push(c);
            }
        }
        let key_pem = read(key)?;
        let pk = parse_pem(&key_pem).find_map(|i| match i {
            Ok(PemItem::PrivateKey(k)) => Some(k),
            _ => None,
        });
        let Some(pk) = pk else {
            return Err(CniError::invalid_config(format!(
                "overlay: etcd: no private key in {}",
                key.display()
            )));
        };
        b = b.client_cert(Some(ClientCert::new_with_certs(&chain, pk)));
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_and_int64_strings() {
        assert_eq!(prefix_end("/a/b/"), b"/a/b0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
        assert_eq!(int(Some(&json!("123"))), 123);
        assert_eq!(int(Some(&json!(7))), 7);
        assert_eq!(int(None), 0);
    }

    #[test]
    fn watch_messages_as_the_gateway_sends_them() {
        let put = json!({"result":{"header":{"revision":"3"},"events":[{"kv":{"key":"Zm9v","create_revision":"2",
            "mod_revision":"3","version":"2","value":"YmF6"}}]}});
        let m = parse_watch(&put).unwrap();
        assert_eq!(m.revision, 3);
        assert_eq!(
            m.events,
            vec![Event::Put(Kv {
                key: "foo".into(),
                value: b"baz".to_vec(),
                create_revision: 2,
                mod_revision: 3,
                lease: 0
            })]
        );
        let del = json!({"result":{"header":{"revision":"4"},"events":[{"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"4"}}]}});
        assert_eq!(parse_watch(&del).unwrap().events, vec![Event::Delete("foo".into())]);
        let cancel = json!({"result":{"header":{"revision":"9"},"canceled":true,"compact_revision":"5"}});
        assert!(parse_watch(&cancel).unwrap().canceled);
        assert!(parse_watch(&json!({"error":{"grpc_code":14}})).is_err());
    }

    #[test]
    fn unreachable_endpoints_are_try_again_naming_each() {
        let conf = EtcdConf {
            endpoints: vec!["http://127.0.0.1:9".into(), "http://127.0.0.1:1".into()],
            prefix: "/p".into(),
            timeout_ms: 500,
            ..Default::default()
        };
        let e = Etcd::new(&conf).unwrap().get("/p/x").unwrap_err();
        assert!(matches!(e, EtcdError::Unavailable(_)));
        let msg = e.to_string();
        assert!(msg.contains("127.0.0.1:9") && msg.contains("127.0.0.1:1"), "{msg}");
        assert_eq!(e.cni("claiming an address").code, 11);
    }
}
