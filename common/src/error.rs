//! The CNI error object and the well-known codes of the spec (§ "Error").
//!
//! Every failure a plugin reports is a [`CniError`]; the skel prints it as
//! `{"cniVersion","code","msg","details"}` on stdout and exits 1.

use std::fmt;

pub type Result<T, E = CniError> = std::result::Result<T, E>;

/// Error codes: 1–11 and 50/51 from the spec, 8 and 999 as libcni emits them.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    pub const INVALID_NETNS: u32 = 8;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const DEGRADED: u32 = 51;
    pub const INTERNAL: u32 = 999;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError { code, msg: msg.into(), details: String::new() }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Prefix the message with what we were doing, keeping the code.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.msg = format!("{what}: {}", self.msg);
        self
    }

    pub fn incompatible_version(msg: impl Into<String>) -> Self {
        Self::new(code::INCOMPATIBLE_VERSION, msg)
    }
    pub fn unsupported_field(msg: impl Into<String>) -> Self {
        Self::new(code::UNSUPPORTED_FIELD, msg)
    }
    pub fn unknown_container(msg: impl Into<String>) -> Self {
        Self::new(code::UNKNOWN_CONTAINER, msg)
    }
    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_ENV, msg)
    }
    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(code::IO_FAILURE, msg)
    }
    pub fn decode(msg: impl Into<String>) -> Self {
        Self::new(code::DECODE_FAILURE, msg)
    }
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_NETWORK_CONFIG, msg)
    }
    pub fn invalid_netns(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_NETNS, msg)
    }
    pub fn try_again(msg: impl Into<String>) -> Self {
        Self::new(code::TRY_AGAIN_LATER, msg)
    }
    pub fn not_available(msg: impl Into<String>) -> Self {
        Self::new(code::NOT_AVAILABLE, msg)
    }
    pub fn degraded(msg: impl Into<String>) -> Self {
        Self::new(code::DEGRADED, msg)
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(code::INTERNAL, msg)
    }

    /// The error object as the spec prints it.
    pub fn to_json(&self, cni_version: &str) -> String {
        let mut obj = serde_json::Map::new();
        obj.insert("cniVersion".into(), cni_version.into());
        obj.insert("code".into(), self.code.into());
        obj.insert("msg".into(), self.msg.clone().into());
        if !self.details.is_empty() {
            obj.insert("details".into(), self.details.clone().into());
        }
        serde_json::Value::Object(obj).to_string()
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

/// Kernel and I/O failures without a more specific code are internal errors
/// (libcni wraps untyped errors as 999).
impl From<std::io::Error> for CniError {
    fn from(e: std::io::Error) -> Self {
        CniError::internal(e.to_string())
    }
}

/// A value for an error message: quoted as `{:?}` shows it, and cut after
/// 64 characters with its length in bytes, so that a hostile 100,000-byte
/// name still gives a message a person can read:
/// `"aaaaaaaa…" (100000 bytes)`.
pub fn shown(value: &str) -> String {
    const KEEP: usize = 64;
    match value.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{:?} ({} bytes)", format!("{}…", &value[..cut]), value.len()),
        None => format!("{value:?}"),
    }
}

/// Errors collected by a teardown (DEL, GC) that keeps going past failures
/// and reports them all at the end.
#[derive(Debug, Default)]
pub struct Errors(Vec<CniError>);

impl Errors {
    pub fn new() -> Self {
        Errors(Vec::new())
    }

    /// Keep the error of `r`, if any.
    pub fn note<T>(&mut self, r: Result<T>) {
        if let Err(e) = r {
            self.0.push(e);
        }
    }

    /// Ok when nothing failed; otherwise one error with every message, the
    /// first failure's code.
    pub fn into_result(self) -> Result<()> {
        let mut it = self.0.into_iter();
        let Some(mut first) = it.next() else { return Ok(()) };
        for e in it {
            first.msg = format!("{}; {}", first.msg, e.msg);
        }
        Err(first)
    }
}

/// Attach context to any error on the way into a `CniError`.
pub trait Context<T> {
    fn context(self, what: impl fmt::Display) -> Result<T>;
    fn with_code(self, code: u32, what: impl fmt::Display) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| CniError::internal(format!("{what}: {e}")))
    }
    fn with_code(self, code: u32, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| CniError::new(code, format!("{what}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_spec_fields() {
        let e = CniError::invalid_env("required env variables [CNI_NETNS] missing");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 4);
        assert_eq!(v["msg"], "required env variables [CNI_NETNS] missing");
        assert!(v.get("details").is_none());
        let e = e.with_details("more");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
        assert_eq!(v["details"], "more");
    }

    #[test]
    fn errors_keep_going_and_report_all() {
        let mut errs = Errors::new();
        errs.note(Ok::<(), CniError>(()));
        assert!(Errors::new().into_result().is_ok());
        errs.note::<()>(Err(CniError::try_again("first")));
        errs.note::<()>(Err(CniError::internal("second")));
        let e = errs.into_result().unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (11, "first; second"));
    }

    #[test]
    fn shown_values_are_quoted_and_cut() {
        assert_eq!(shown("eth0"), "\"eth0\"");
        assert_eq!(shown("a\u{1}b"), "\"a\\u{1}b\"");
        let long = "x".repeat(100_000);
        assert_eq!(shown(&long), format!("\"{}…\" (100000 bytes)", "x".repeat(64)));
        // Cut on a character boundary.
        let wide = "ü".repeat(100);
        assert_eq!(shown(&wide), format!("\"{}…\" (200 bytes)", "ü".repeat(64)));
        assert_eq!(shown(&"y".repeat(64)), format!("\"{}\"", "y".repeat(64)));
    }

    #[test]
    fn code_table_matches_spec() {
        let table = [
            (CniError::incompatible_version(""), 1),
            (CniError::unsupported_field(""), 2),
            (CniError::unknown_container(""), 3),
            (CniError::invalid_env(""), 4),
            (CniError::io(""), 5),
            (CniError::decode(""), 6),
            (CniError::invalid_config(""), 7),
            (CniError::invalid_netns(""), 8),
            (CniError::try_again(""), 11),
            (CniError::not_available(""), 50),
            (CniError::degraded(""), 51),
            (CniError::internal(""), 999),
        ];
        for (e, c) in table {
            assert_eq!(e.code, c);
        }
    }
}
