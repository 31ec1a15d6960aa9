//! Test prerequisites, with no silent skips: a test that needs root or a tool it cannot
//! find says so. Under `ZVBENCH_REQUIRE_PRIVILEGED=1` (set by `scripts/test`, as in CI)
//! that fails the test, naming what is missing; otherwise the test prints that it skipped
//! and returns. Shared by the runner's and the agent's tests (the agent's include this
//! file by path).

/// The environment variable that turns a missing prerequisite into a failure.
pub const REQUIRE_ENV: &str = "ZVBENCH_REQUIRE_PRIVILEGED";

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and has no side effects.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `tool` can be started (its exit status does not matter).
pub fn have(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok()
}

/// Whether every need is met: `"root"` or a program's name. When one is not, fails the
/// test under [`REQUIRE_ENV`], else prints "skipped" with what is missing.
pub fn require(needs: &[&str]) -> bool {
    let missing: Vec<&str> = needs
        .iter()
        .copied()
        .filter(|n| match *n {
            "root" => !is_root(),
            tool => !have(tool),
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(", ");
    if std::env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1") {
        panic!("missing prerequisite: {what} ({REQUIRE_ENV}=1: privileged tests must run here)");
    }
    eprintln!("skipped: needs {what} (set {REQUIRE_ENV}=1 to make this a failure)");
    false
}
