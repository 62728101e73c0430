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
            CallError::Other(m) => CniError::io(m),
        }
    }
}

/// Send `req` to the daemon at `socket` and wait for its reply, however long
/// the DHCP exchange takes (the daemon bounds it with `-resendtimeout`).
pub fn call(socket: &str, req: &Request) -> Result<Reply, CallError> {
    let stream = UnixStream::connect(socket).map_err(|e| {
        let msg = format!(
            "cannot reach the DHCP daemon at {socket}: {e}; it is started as `dhcp daemon` \
             (e.g. by the cni-dhcp service), and ipam.daemonSocketPath must name its -socketpath"
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
    (&stream).write_all(&protocol::to_line(req)).map_err(|e| io_err("sending the request", e))?;
    let line = protocol::read_line(&stream, protocol::MAX_REPLY)
        .map_err(|e| io_err("reading the reply", e))?
        .ok_or(CallError::Vanished)?;
    serde_json::from_slice(&line)
        .map_err(|e| CallError::Other(format!("DHCP daemon at {socket}: unreadable reply: {e}")))
}
