//! The plugin's side of the socket: one request, one reply.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;

use common::CniError;

use crate::protocol::{self, Reply, Request};

/// Why a call did not get a reply.
#[derive(Debug)]
pub enum CallError {
    /// Nobody listens: no socket, or a socket left by a daemon that is gone.
    NotRunning(String),
    /// The daemon took the request but closed the connection without a
    /// reply: it exited (or was killed) meanwhile.
    Vanished,
    /// The request would be longer than the daemon reads (a huge network name).
    TooLong(String),
    Other(String),
}

impl CallError {
    /// As a CNI error: the daemon not running is worth trying again later.
    pub fn into_cni(self) -> CniError {
        match self {
            CallError::NotRunning(m) => CniError::try_again(m),
            CallError::Vanished => CniError::try_again(
                "the DHCP daemon closed the connection without answering (did it exit or restart?)",
            ),
            CallError::TooLong(m) => CniError::invalid_config(m),
            CallError::Other(m) => CniError::io(m),
        }
    }
}

/// Send `req` to the daemon at `socket` and wait for its reply, however long
/// the DHCP exchange takes (the daemon bounds it with `-resendtimeout`).
pub fn call(socket: &str, req: &Request) -> Result<Reply, CallError> {
    let line = protocol::to_line(req);
    if line.len() > protocol::MAX_REQUEST {
        return Err(CallError::TooLong(format!(
            "the network name of {} bytes makes the request to the DHCP daemon {} bytes, more than its {}",
            req.network.len(),
            line.len(),
            protocol::MAX_REQUEST
        )));
    }
    let path = std::path::Path::new(socket);
    let stream = common::sockaddr::with_unix_path(path, |p| UnixStream::connect(p)).map_err(|e| {
        let msg = format!(
            "cannot reach the DHCP daemon at {}: {e}; it is started as `dhcp daemon` \
             (e.g. by the cni-dhcp service), and ipam.daemonSocketPath must name its -socketpath",
            common::error::shown(socket)
        );
        match e.raw_os_error() {
            Some(libc::ENOENT | libc::ECONNREFUSED) => CallError::NotRunning(msg),
            _ => CallError::Other(msg),
        }
    })?;
    let io_err = |what: &str, e: io::Error| match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => CallError::Vanished,
        _ => CallError::Other(format!("DHCP daemon at {socket}: {what}: {e}")),
    };
    (&stream).write_all(&line).map_err(|e| io_err("sending the request", e))?;
    let line = protocol::read_line(&stream, protocol::MAX_REPLY)
        .map_err(|e| io_err("reading the reply", e))?
        .ok_or(CallError::Vanished)?;
    serde_json::from_slice(&line)
        .map_err(|e| CallError::Other(format!("DHCP daemon at {socket}: unreadable reply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(container_id: &str, network: &str) -> Request {
        Request {
            command: "ADD".into(),
            container_id: container_id.into(),
            network: network.into(),
            ..Default::default()
        }
    }

    #[test]
    fn any_container_id_fits_and_an_oversized_request_is_refused_before_sending() {
        // The kernel lets an environment string (CNI_CONTAINERID) be 128 KiB.
        let id = "c".repeat(128 * 1024);
        assert!(protocol::to_line(&request(&id, "net1")).len() <= protocol::MAX_REQUEST);
        // Only a network name of megabytes makes a request too long: code 7,
        // said before the daemon is even asked (this socket does not exist).
        let e = call("/nonexistent/dhcp.sock", &request("c1", &"n".repeat(2 << 20))).unwrap_err().into_cni();
        assert_eq!(e.code, 7, "{e}");
        assert!(e.msg.contains("network name of 2097152 bytes"), "{e}");
    }
}
