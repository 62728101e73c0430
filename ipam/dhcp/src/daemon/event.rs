//! Waking threads: an [`Event`] is an eventfd that, once set, stays set, so
//! a thread can wait for it together with its sockets in one `poll`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Event(OwnedFd);

impl Event {
    pub fn new() -> io::Result<Event> {
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(Event(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Set it; it stays readable (nobody reads the counter).
    pub fn set(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64. A full counter (never, at
        // one write per set) would only mean it is already set.
        unsafe { libc::write(self.0.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
    }

    pub fn is_set(&self) -> bool {
        matches!(wait(&[(self.fd(), libc::POLLIN)], Some(Duration::ZERO)), Ok(Some(_)))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Sleep for `d` unless the event is set first; true when it was set.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        loop {
            match wait(&[(self.fd(), libc::POLLIN)], Some(deadline.saturating_duration_since(Instant::now())))
            {
                Ok(Some(_)) => return true,
                Ok(None) if Instant::now() >= deadline => return false,
                _ => {}
            }
        }
    }
}

/// Wait until one of `fds` has one of its events (or an error/hang-up), or
/// `timeout` passes (`None`: forever). The index of the first ready fd.
pub fn wait(fds: &[(RawFd, libc::c_short)], timeout: Option<Duration>) -> io::Result<Option<usize>> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 }).collect();
    // Round up, so a short wait never busy-loops at 0 ms.
    let ms = timeout.map_or(-1, |t| t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32);
    // SAFETY: a valid array of pollfd of the given length.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted { Ok(None) } else { Err(e) };
    }
    Ok(pfds.iter().position(|p| p.revents != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_stays_set_for_every_waiter() {
        let e = Event::new().unwrap();
        assert!(!e.is_set());
        assert!(!e.sleep(Duration::from_millis(1)));
        e.set();
        e.set();
        assert!(e.is_set());
        assert!(e.sleep(Duration::from_secs(60)), "returns at once when set");
        assert_eq!(wait(&[(e.fd(), libc::POLLIN)], None).unwrap(), Some(0));
    }
}
