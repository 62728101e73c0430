//! etcd v3 through its JSON gateway (`/v3/kv/*`, `/v3/lease/*`,
//! `/v3/watch`), over ureq's small synchronous HTTP client. Keys and values
//! travel base64-encoded; 64-bit numbers as JSON strings.
//!
//! Every request tries the endpoints in turn, starting with the one that
//! answered last: a member that is down, or cannot serve (no quorum, no
//! leader), hands the request to the next. "Nobody could answer" is
//! [`EtcdError::Unavailable`] — the plugin's code 11, try again later. A
//! TLS failure (a certificate either side does not accept) will not clear up
//! by itself: [`EtcdError::Tls`], code 7, naming the certificate problem.

use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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
    /// No endpoint answered, and at least one because the TLS session was
    /// refused (a certificate not accepted by etcd or by us).
    Tls(String),
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtcdError::Unavailable(m) => write!(f, "etcd is unavailable: {m}"),
            EtcdError::Refused { code, message } => {
                write!(f, "etcd refused the request: {message} (code {code})")
            }
            EtcdError::Tls(m) => write!(f, "TLS with etcd failed: {m}"),
        }
    }
}

impl EtcdError {
    /// As a CNI error: unavailable is "try again later" (11); a certificate
    /// problem is the configuration's (7).
    pub fn cni(&self, what: &str) -> CniError {
        match self {
            EtcdError::Unavailable(_) => CniError::try_again(format!("{what}: {self}")),
            EtcdError::Tls(_) => CniError::invalid_config(format!("{what}: {self}")),
            EtcdError::Refused { .. } => CniError::internal(format!("{what}: {self}")),
        }
    }

    /// etcd could not be talked to at all (what DEL, CHECK and the agent
    /// wait out, keeping what runs as it is).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, EtcdError::Unavailable(_) | EtcdError::Tls(_))
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
    conf: EtcdConf,
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
            conf: conf.clone(),
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
        let mut tls = false;
        for i in 0..n {
            let idx = (first + i) % n;
            let url = format!("{}{path}", self.endpoints[idx]);
            match self.post(&url, &body) {
                Ok(v) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(EtcdError::Unavailable(m)) => why.push(format!("{}: {m}", self.endpoints[idx])),
                Err(EtcdError::Tls(m)) => {
                    tls = true;
                    why.push(format!("{}: {m}", self.endpoints[idx]));
                }
                Err(e) => return Err(e),
            }
        }
        Err(if tls { EtcdError::Tls(why.join("; ")) } else { EtcdError::Unavailable(why.join("; ")) })
    }

    /// Why a request did not get through: unreachable, or refused at TLS.
    fn send_error(&self, url: &str, e: ureq::Error) -> EtcdError {
        match &e {
            ureq::Error::Rustls(tls) => EtcdError::Tls(tls_problem(tls, self.conf.cert_file.is_some())),
            ureq::Error::Tls(m) => EtcdError::Tls(m.to_string()),
            ureq::Error::Io(io) => {
                if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    return EtcdError::Tls(tls_problem(tls, self.conf.cert_file.is_some()));
                }
                let cut = matches!(
                    io.kind(),
                    ErrorKind::BrokenPipe
                        | ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::UnexpectedEof
                );
                match if cut { self.tls_alert(url) } else { None } {
                    Some(problem) => EtcdError::Tls(problem),
                    None => EtcdError::Unavailable(e.to_string()),
                }
            }
            _ => EtcdError::Unavailable(e.to_string()),
        }
    }

    /// Why etcd cut a TLS connection that was up, if a certificate is why.
    /// In TLS 1.3 the server judges our client certificate only after our
    /// side of the handshake is done, so its alert races with our request,
    /// which then fails as a broken pipe or a reset. A second connection
    /// that sends nothing and only reads gets the alert itself.
    fn tls_alert(&self, url: &str) -> Option<String> {
        let authority = url.strip_prefix("https://")?.split('/').next()?;
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next()?,
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        };
        let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok());
        let addr = if has_port { authority.to_string() } else { format!("{authority}:443") };
        let addr = addr.to_socket_addrs().ok()?.next()?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).ok()?;
        let mut conn = rustls::ClientConnection::new(probe_config(&self.conf)?, name).ok()?;
        let mut sock = TcpStream::connect_timeout(&addr, self.timeout).ok()?;
        let wait = Some(self.timeout.min(Duration::from_secs(1)));
        sock.set_read_timeout(wait).ok()?;
        sock.set_write_timeout(wait).ok()?;
        let err = rustls::Stream::new(&mut conn, &mut sock).read(&mut [0u8; 1]).err()?;
        let tls = err.get_ref()?.downcast_ref::<rustls::Error>()?;
        Some(tls_problem(tls, self.conf.cert_file.is_some()))
    }

    fn post(&self, url: &str, body: &str) -> EtcdResult<Value> {
        let mut resp = self
            .agent
            .post(url)
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| self.send_error(url, e))?;
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

/// The PEM files of the configuration: the CAs to trust, and our
/// certificate chain with its key.
type Pems = (
    Vec<ureq::tls::Certificate<'static>>,
    Option<(Vec<ureq::tls::Certificate<'static>>, ureq::tls::PrivateKey<'static>)>,
);

fn read_pems(conf: &EtcdConf) -> common::Result<Pems> {
    use ureq::tls::{parse_pem, PemItem};
    let read = |p: &std::path::Path| {
        std::fs::read(p)
            .map_err(|e| CniError::invalid_config(format!("overlay: etcd: reading {}: {e}", p.display())))
    };
    let bad_pem = |p: &std::path::Path, e: ureq::Error| {
        CniError::invalid_config(format!("overlay: etcd: {} is not valid PEM: {e}", p.display()))
    };
    let certs_in = |p: &std::path::Path| -> common::Result<Vec<ureq::tls::Certificate<'static>>> {
        let mut certs = Vec::new();
        for item in parse_pem(&read(p)?) {
            if let PemItem::Certificate(c) = item.map_err(|e| bad_pem(p, e))? {
                certs.push(c);
            }
        }
        Ok(certs)
    };
    let mut roots = Vec::new();
    if let Some(ca) = &conf.ca_file {
        roots = certs_in(ca)?;
        if roots.is_empty() {
            return Err(CniError::invalid_config(format!(
                "overlay: etcd: no certificate in {}",
                ca.display()
            )));
        }
    }
    let mut client = None;
    if let (Some(cert), Some(key)) = (&conf.cert_file, &conf.key_file) {
        let chain = certs_in(cert)?;
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
        client = Some((chain, pk));
    }
    Ok((roots, client))
}

fn tls_config(conf: &EtcdConf) -> common::Result<ureq::tls::TlsConfig> {
    use ureq::tls::{ClientCert, RootCerts, TlsConfig};
    let (roots, client) = read_pems(conf)?;
    let mut b = TlsConfig::builder();
    if !roots.is_empty() {
        b = b.root_certs(RootCerts::new_with_certs(&roots));
    }
    if let Some((chain, key)) = client {
        b = b.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(b.build())
}

/// The same TLS settings for rustls itself (the probe of `tls_alert`);
/// none without a `caFile`.
fn probe_config(conf: &EtcdConf) -> Option<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (roots, client) = read_pems(conf).ok()?;
    let der = |c: &ureq::tls::Certificate| CertificateDer::from(c.der().to_vec());
    let mut store = rustls::RootCertStore::empty();
    for c in &roots {
        store.add(der(c)).ok()?;
    }
    if store.is_empty() {
        return None;
    }
    // ring, as ureq's own sessions use (its rustls feature).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(store);
    let config = match client {
        Some((chain, key)) => b
            .with_client_auth_cert(
                chain.iter().map(der).collect(),
                PrivateKeyDer::try_from(key.der().to_vec()).ok()?,
            )
            .ok()?,
        None => b.with_no_client_auth(),
    };
    Some(Arc::new(config))
}

/// A TLS failure as a person can act on it.
/// (etcd 3.4 answers a missing client certificate with "bad certificate".)
fn tls_problem(e: &rustls::Error, sent_cert: bool) -> String {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::AlertReceived(A::CertificateRequired | A::NoCertificate | A::BadCertificate)
            if !sent_cert =>
        {
            "etcd requires a client certificate: set etcd.certFile and etcd.keyFile".into()
        }
        rustls::Error::AlertReceived(
            a @ (A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied),
        ) => format!(
            "etcd refused our client certificate ({a:?}): etcd.certFile must be a client certificate \
             (extendedKeyUsage clientAuth) of a CA etcd trusts (its --trusted-ca-file)"
        ),
        rustls::Error::InvalidCertificate(why) => format!(
            "etcd's certificate is not accepted ({why:?}): etcd.caFile must hold the CA that signed it, \
             and it must name the endpoint's host or IP address"
        ),
        other => format!("TLS: {other}"),
    }
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
