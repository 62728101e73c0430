//! `dhcp daemon` flags, parsed as Go's `flag` package parses the reference's,
//! so service units written for it keep working: `-name value`,
//! `-name=value`, `--name`, booleans as `-broadcast` or `-broadcast=false`,
//! durations as Go writes them (`10s`, `1m30s`, `500ms`); parsing stops at
//! `--` or the first argument that is not a flag.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Flags {
    pub pidfile: Option<PathBuf>,
    pub hostprefix: String,
    pub socketpath: String,
    pub broadcast: bool,
    pub timeout: Duration,
    pub resendmax: Duration,
    pub resendtimeout: Duration,
    /// Ours: where leases are kept across restarts (default beside the socket).
    pub statedir: Option<String>,
}

pub const DEFAULT_SOCKET: &str = "/run/cni/dhcp.sock";

impl Default for Flags {
    fn default() -> Flags {
        Flags {
            pidfile: None,
            hostprefix: String::new(),
            socketpath: DEFAULT_SOCKET.into(),
            broadcast: false,
            timeout: Duration::from_secs(10),
            resendmax: Duration::from_secs(62),
            resendtimeout: Duration::from_secs(208),
            statedir: None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Run(Flags),
    Help,
}

pub const USAGE: &str = "Usage of dhcp daemon:
  -broadcast
    \tbroadcast DHCP leases (set the broadcast flag in DHCP requests)
  -hostprefix string
    \toptional prefix to host root (the socket, the netns paths and the state directory are under it)
  -pidfile string
    \toptional path to write daemon PID to
  -resendmax duration
    \toptional dhcp client max resend delay between requests (default 1m2s)
  -resendtimeout duration
    \toptional dhcp client resend timeout, no more retries after this timeout (default 3m28s)
  -socketpath string
    \toptional dhcp server socketpath (default \"/run/cni/dhcp.sock\")
  -statedir string
    \twhere leases are kept across daemon restarts (default: <socket dir>/<socket name>.leases)
  -timeout duration
    \toptional dhcp client timeout duration for each request (default 10s)
";

pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut f = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else { break };
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            if arg == "-" {
                break;
            }
            return Err(format!("bad flag syntax: {arg}"));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            return Ok(Parsed::Help);
        }
        if name == "broadcast" {
            f.broadcast = match inline.as_deref() {
                None => true,
                Some(v) => parse_bool(v)
                    .ok_or_else(|| format!("invalid boolean value {v:?} for -broadcast: parse error"))?,
            };
            continue;
        }
        const VALUED: &[&str] =
            &["pidfile", "hostprefix", "socketpath", "statedir", "timeout", "resendmax", "resendtimeout"];
        if !VALUED.contains(&name) {
            return Err(format!("flag provided but not defined: -{name}"));
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = args.get(i).ok_or_else(|| format!("flag needs an argument: -{name}"))?;
                i += 1;
                v.clone()
            }
        };
        let duration =
            |v: &str| parse_duration(v).map_err(|e| format!("invalid value {v:?} for flag -{name}: {e}"));
        match name {
            "pidfile" => f.pidfile = Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty()),
            "hostprefix" => f.hostprefix = value,
            "socketpath" => f.socketpath = if value.is_empty() { DEFAULT_SOCKET.into() } else { value },
            "statedir" => f.statedir = Some(value).filter(|v| !v.is_empty()),
            "timeout" => f.timeout = duration(&value)?,
            "resendmax" => f.resendmax = duration(&value)?,
            _ => f.resendtimeout = duration(&value)?,
        }
    }
    if f.timeout.is_zero() {
        return Err("-timeout must be longer than 0".into());
    }
    Ok(Parsed::Run(f))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `time.ParseDuration`, for durations that are not negative:
/// a sequence of decimal numbers, each with an optional fraction and a unit
/// (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `1h2m3.5s`; `0` alone too.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.starts_with('-') {
        return Err("negative durations are not allowed".into());
    }
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err("invalid duration".into());
    }
    let mut total: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let int_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err("invalid duration".into());
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err("missing unit in duration".into()),
            u => return Err(format!("unknown unit {u:?} in duration")),
        };
        let whole: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| "invalid duration")? };
        let mut part = whole.checked_mul(nanos).ok_or("invalid duration")?;
        if !frac.is_empty() {
            let digits = frac.len().min(30);
            let f: u128 = frac[..digits].parse().map_err(|_| "invalid duration")?;
            part += f * nanos / 10u128.pow(digits as u32);
        }
        total = total.checked_add(part).ok_or("invalid duration")?;
        if total > u64::MAX as u128 {
            return Err("invalid duration".into());
        }
        rest = next;
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Flags, String> {
        match parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())? {
            Parsed::Run(f) => Ok(f),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults_are_the_references() {
        let f = run(&[]).unwrap();
        assert_eq!(f.socketpath, "/run/cni/dhcp.sock");
        assert_eq!(f.timeout, Duration::from_secs(10));
        assert_eq!(f.resendmax, Duration::from_secs(62));
        assert_eq!(f.resendtimeout, Duration::from_secs(208));
        assert!(!f.broadcast && f.pidfile.is_none() && f.hostprefix.is_empty());
    }

    #[test]
    fn every_spelling_go_accepts() {
        let f = run(&[
            "-socketpath",
            "/tmp/d.sock",
            "--pidfile=/tmp/d.pid",
            "-hostprefix=/host",
            "-broadcast",
            "--timeout",
            "1m30s",
            "-resendmax=500ms",
            "-resendtimeout",
            "2h",
        ])
        .unwrap();
        assert_eq!(f.socketpath, "/tmp/d.sock");
        assert_eq!(f.pidfile, Some(PathBuf::from("/tmp/d.pid")));
        assert_eq!(f.hostprefix, "/host");
        assert!(f.broadcast);
        assert_eq!(f.timeout, Duration::from_secs(90));
        assert_eq!(f.resendmax, Duration::from_millis(500));
        assert_eq!(f.resendtimeout, Duration::from_secs(7200));
        assert!(!run(&["-broadcast=false"]).unwrap().broadcast);
        assert!(run(&["-broadcast=1"]).unwrap().broadcast);
        // A bare bool does not take the next word; parsing stops there, as in Go.
        let f = run(&["-broadcast", "false", "-timeout", "x"]).unwrap();
        assert!(f.broadcast);
        assert_eq!(run(&["--", "-bogus"]).unwrap(), Flags::default());
        assert_eq!(run(&["-h"]), Err("help".into()));
    }

    #[test]
    fn bad_flags_name_the_problem() {
        assert_eq!(run(&["-bogus"]).unwrap_err(), "flag provided but not defined: -bogus");
        assert_eq!(run(&["-timeout"]).unwrap_err(), "flag needs an argument: -timeout");
        assert!(run(&["-timeout", "10"]).unwrap_err().contains("missing unit"));
        assert!(run(&["-timeout=0"]).unwrap_err().contains("longer than 0"));
        assert!(run(&["-broadcast=maybe"]).unwrap_err().contains("invalid boolean"));
        assert!(run(&["---x"]).unwrap_err().contains("bad flag syntax"));
    }

    #[test]
    fn the_example_units_start_the_daemon_as_the_references_do() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf-examples/systemd");
        let service = std::fs::read_to_string(dir.join("cni-dhcp.service")).unwrap();
        let exec = service.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
        let words: Vec<String> = exec.split_whitespace().map(String::from).collect();
        assert_eq!(words[..2], ["/opt/cni/bin/dhcp", "daemon"]);
        assert_eq!(parse(&words[2..]), Ok(Parsed::Run(Flags::default())));
        let socket = std::fs::read_to_string(dir.join("cni-dhcp.socket")).unwrap();
        assert!(socket.lines().any(|l| l == format!("ListenStream={DEFAULT_SOCKET}")), "{socket}");
    }

    #[test]
    fn durations_as_go_writes_them() {
        let d = |s: &str| parse_duration(s);
        assert_eq!(d("0"), Ok(Duration::ZERO));
        assert_eq!(d("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(d("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(d(".5m"), Ok(Duration::from_secs(30)));
        assert_eq!(d("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(d("2us"), Ok(Duration::from_micros(2)));
        assert_eq!(d("2µs"), Ok(Duration::from_micros(2)));
        assert_eq!(d("+7ns"), Ok(Duration::from_nanos(7)));
        for bad in ["", "s", "1", "1x", "-1s", "1..2s", ".s", "99999999999999999999h"] {
            assert!(d(bad).is_err(), "{bad}");
        }
    }
}
