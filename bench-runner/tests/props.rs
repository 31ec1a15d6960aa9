//! Properties of the scenario parser, the one parser of untrusted input the runner owns:
//! whatever the text, it never panics, and every error names the file, a line and a column
//! inside the text. 256 cases per property by default (a few seconds); a longer run:
//! `PROPTEST_CASES=20000 cargo test -p zvbench --test props`.

use proptest::prelude::*;
use std::time::{Duration, Instant};

const VALID: &str = r#"
[run]
repetitions = 2
disk_size = "64M"
guest_timeout_s = 300

[[target]]
name = "host"
storage = "host"
dir = "/var/tmp"

[[target]]
name = "raw"
storage = "loop"
dir = "/var/tmp"
bus = "sata"

[[workload]]
name = "w"
kind = "seqwr"
bs = "16K"
size = "1M"
sync = "fsync"
sync_every = 4
"#;

/// Values a user (or a fuzzer) might write anywhere a value goes.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| format!("\"{n}\"")),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        Just("inf".to_string()),
        Just("nan".to_string()),
        Just("-0".to_string()),
        Just("9223372036854775807".to_string()),
        Just("\"16E\"".to_string()),
        Just("\"\"".to_string()),
        Just("true".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        "\"[a-zA-Z0-9 ,./-]{0,12}\"",
    ]
}

/// Checks what every parse result must satisfy.
fn check(text: &str) -> Result<(), TestCaseError> {
    match zvbench::scenario::parse("p.toml", text) {
        Ok(plan) => {
            prop_assert!(Instant::now()
                .checked_add(Duration::from_secs(plan.guest_timeout_s))
                .is_some());
            prop_assert!(plan.guest_timeout_s > 0);
        }
        Err(e) => {
            let lines = text.lines().count().max(1) + 1;
            prop_assert!(e.line >= 1 && e.line <= lines, "{e} ({lines} lines)");
            prop_assert!(e.col >= 1, "{e}");
            let msg = e.to_string();
            let prefix = format!("p.toml:{}:{}: ", e.line, e.col);
            prop_assert!(msg.starts_with(&prefix), "{msg}");
        }
    }
    Ok(())
}

proptest! {
    /// Any text at all.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        check(&text)?;
    }

    /// The valid scenario with one value replaced by anything.
    #[test]
    fn any_value_anywhere(line in 0usize..40, v in value()) {
        let text: String = VALID
            .lines()
            .enumerate()
            .map(|(i, l)| match l.split_once(" = ") {
                Some((k, _)) if i == line => format!("{k} = {v}\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        check(&text)?;
    }

    /// The valid scenario cut short or with a byte dropped, as an editor crash leaves it.
    #[test]
    fn damaged_text(cut in 0usize..VALID.len(), drop in 0usize..VALID.len()) {
        let mut t = VALID.as_bytes()[..cut].to_vec();
        if drop < t.len() {
            t.remove(drop);
        }
        check(&String::from_utf8_lossy(&t))?;
    }

    /// Every guest_timeout_s: accepted only within its bounds, never a panic later.
    #[test]
    fn guest_timeout_is_bounded(n in any::<u64>()) {
        let text = VALID.replace("guest_timeout_s = 300", &format!("guest_timeout_s = {}", n >> (n % 64)));
        check(&text)?;
    }
}

#[test]
fn the_valid_scenario_parses() {
    let plan = zvbench::scenario::parse("p.toml", VALID).unwrap();
    assert_eq!(plan.targets.len(), 2);
}
