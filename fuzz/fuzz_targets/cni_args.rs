//! `CNI_ARGS` (`K=V;K=V`): never a panic; what parses renders back to the
//! same pairs; refusals are code 4 with a message.
#![no_main]

use common::args::CniArgs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    match CniArgs::parse(s) {
        Err(e) => {
            assert_eq!(e.code, 4, "{e:?}");
            cni_rs_fuzz::readable(&e);
        }
        Ok(args) => {
            // Every pair is KEY=VALUE with a non-empty key and no '=' or ';'.
            let pairs: Vec<(&str, &str)> = s
                .split(';')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').expect("accepted pairs have '='"))
                .collect();
            for (k, v) in &pairs {
                assert!(!k.is_empty() && !k.contains('=') && !v.contains('='));
                // The first pair of a key wins, as libcni's LoadArgs does.
                let first = pairs.iter().find(|(k2, _)| k2 == k).unwrap().1;
                assert_eq!(args.get(k), Some(first));
            }
            let rendered: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            assert_eq!(CniArgs::parse(&rendered.join(";")).unwrap(), args);
            let _ = args.ignore_unknown();
            let _ = args.check_known(&["IP", "MAC", "K8S_POD_NAME"]);
        }
    }
});
