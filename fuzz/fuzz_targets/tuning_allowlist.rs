//! The node's sysctl allowlist (Go RE2 patterns, one a line) and a key
//! checked against it. Input: the allowlist text, a NUL byte, the key.
//! Never a panic (a 100,000-character key crashed the recursive matcher);
//! a broken line is code 999 naming the file, a refused key code 7; and
//! for ASCII keys the decision is the full `regex` engine's on the same
//! translated patterns (a differential check of regex-lite).
#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use regex_automata::nfa::thompson::{self, pikevm::PikeVM};
use tuning::allowlist::{go_to_lite, Allowlist};

/// The oracle: the `regex` crate's own parser and NFA, matched by its
/// PikeVM — the same language as `regex::Regex`, without building the
/// meta engine's other matchers, which made compiling each new pattern the
/// bulk of a run.
type Oracle = std::rc::Rc<PikeVM>;
type Compiled = HashMap<String, Option<Oracle>>;

thread_local! {
    /// The oracle's compiled patterns, this generation's and the last's
    /// (compiling them dominated each run).
    static ORACLE: RefCell<(Compiled, Compiled)> = RefCell::new(Default::default());
}

/// Patterns per generation. The cache is bounded (50,000 compiled
/// `regex::Regex`es, the oracle before the PikeVM, took a long run past
/// libFuzzer's 2 GB limit); a pattern used in this or the last generation
/// survives, so the lines a mutation did not touch are rarely recompiled.
const GENERATION: usize = 3_000;

fn full_engine(lite: &str) -> Option<Oracle> {
    ORACLE.with(|o| {
        let (now, last) = &mut *o.borrow_mut();
        if let Some(re) = now.get(lite) {
            return re.clone();
        }
        let re = last.remove(lite).unwrap_or_else(|| {
            PikeVM::builder()
                .thompson(thompson::Config::new().nfa_size_limit(Some(1 << 24)))
                .build(lite)
                .ok()
                .map(std::rc::Rc::new)
        });
        if now.len() >= GENERATION {
            *last = std::mem::take(now);
        }
        now.insert(lite.to_string(), re.clone());
        re
    })
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let Ok(text) = std::str::from_utf8(&data[..split]) else { return };
    let key = String::from_utf8_lossy(data.get(split + 1..).unwrap_or_default());
    let list = match Allowlist::parse(text, "/etc/cni/tuning/allowlist.conf") {
        Ok(l) => l,
        Err(e) => {
            assert_eq!(e.code, 999, "{e:?}");
            assert!(e.msg.contains("/etc/cni/tuning/allowlist.conf"), "{}", e.msg);
            return;
        }
    };
    let verdict = list.check(&key);
    if let Err(e) = &verdict {
        assert_eq!(e.code, 7, "{e:?}");
    }
    if !key.is_ascii() {
        return;
    }
    // The oracle: the same translated patterns in the full engine.
    let mut oracle = false;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (lite, _) = go_to_lite(line).expect("the allowlist parsed, so every line translates");
        let Some(re) = full_engine(&lite) else { return };
        oracle |= re.is_match(&mut re.create_cache(), key.as_bytes());
    }
    assert_eq!(verdict.is_ok(), oracle, "regex-lite and regex differ on {key:?}");
});
