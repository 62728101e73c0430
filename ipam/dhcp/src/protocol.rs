//! The plugin ↔ daemon protocol: one request and one reply per connection on
//! the daemon's Unix socket, each a single JSON object on one line (`\n`
//! ends it; JSON strings never hold a raw newline).
//!
//! ```text
//! → {"version":1,"command":"ADD","containerID":"…","netns":"/run/netns/x","ifname":"eth0",
//!    "network":"lan","request":[1,3,6],"provide":[{"code":12,"value":"web"}],"priority":0}
//! ← {"result":{"cniVersion":"1.1.0","ips":[…],"routes":[…],"dns":{…}}}
//! ← {"error":{"code":11,"msg":"…"}}
//! ```
//!
//! Commands: `ADD` (acquire, or return the lease already held), `DEL`
//! (release), `CHECK` (the lease held, as a result), `GC` (release the
//! leases of `network` whose attachment is not in `validAttachments`),
//! `STATUS`. The plugin keeps its end open until the reply: the daemon takes
//! a hang-up during ADD as the caller's death and gives the lease back.

use std::io::{self, BufRead, Read};

use common::spec::CniResult;
use serde::{Deserialize, Serialize};

pub const VERSION: u32 = 1;
/// Requests carry names and a few options: a container ID up to the 128 KiB
/// the kernel allows an environment string, a network name, a netns path.
pub const MAX_REQUEST: usize = 1024 * 1024;
/// A reply holds one result; DHCP options are small.
pub const MAX_REPLY: usize = 1024 * 1024;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Provided {
    pub code: u8,
    pub value: String,
}

/// An attachment GC keeps, as in `cni.dev/valid-attachments`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub version: u32,
    pub command: String,
    #[serde(default, rename = "containerID")]
    pub container_id: String,
    #[serde(default)]
    pub netns: String,
    #[serde(default)]
    pub ifname: String,
    #[serde(default)]
    pub network: String,
    /// Option codes for the parameter request list (55), in order.
    #[serde(default)]
    pub request: Vec<u8>,
    /// Options sent to the server with every request.
    #[serde(default)]
    pub provide: Vec<Provided>,
    /// Metric of the routes in the result (0: none).
    #[serde(default)]
    pub priority: u32,
    #[serde(default)]
    pub valid_attachments: Vec<Attachment>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReplyError {
    pub code: u32,
    pub msg: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<CniResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplyError>,
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::default()
    }

    pub fn result(r: CniResult) -> Reply {
        Reply { result: Some(r), error: None }
    }

    pub fn error(e: &common::CniError) -> Reply {
        Reply { result: None, error: Some(ReplyError { code: e.code, msg: e.msg.clone() }) }
    }
}

/// One line of at most `max` bytes, without its `\n`. `Ok(None)` at a clean
/// end of stream before any byte; an error for a longer or cut-off line.
pub fn read_line(r: impl Read, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut reader = io::BufReader::new(r.take(max as u64 + 1));
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        let why = if line.len() > max { "longer than the limit" } else { "cut off" };
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("message {why}")));
    }
    line.pop();
    Ok(Some(line))
}

/// A message as one line.
pub fn to_line<T: Serialize>(msg: &T) -> Vec<u8> {
    // Our own types always serialize; an empty line would read as an error.
    let mut v = serde_json::to_vec(msg).unwrap_or_default();
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_survives_the_line_framing() {
        let req = Request {
            version: VERSION,
            command: "ADD".into(),
            container_id: "c1".into(),
            netns: "/run/netns/a\nb".into(),
            provide: vec![Provided { code: 12, value: "web\n".into() }],
            ..Default::default()
        };
        let line = to_line(&req);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "only the terminator");
        let back = read_line(&line[..], MAX_REQUEST).unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<Request>(&back).unwrap(), req);
        assert!(String::from_utf8(back).unwrap().contains("\"containerID\":\"c1\""));
    }

    #[test]
    fn lines_are_bounded_and_must_be_complete() {
        assert_eq!(read_line(&b""[..], 10).unwrap(), None);
        assert_eq!(read_line(&b"abc\nrest"[..], 10).unwrap(), Some(b"abc".to_vec()));
        assert!(read_line(&b"abc"[..], 10).unwrap_err().to_string().contains("cut off"));
        assert!(read_line(&[b'x'; 100][..], 10).unwrap_err().to_string().contains("longer"));
    }
}
