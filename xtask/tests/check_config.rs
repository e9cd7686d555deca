//! `cargo xtask check-config` as a command: its exit status and the line
//! Envoy would log. The checks themselves are tested in src/check_config.rs.

use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap()
}

#[test]
fn exits_zero_for_a_good_config_and_non_zero_with_envoys_line_for_a_bad_one() {
    let ok = xtask(&["check-config", "envoy/chain.yaml"]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(
        stdout,
        "envoy/chain.yaml: wasm filter `chain` (root_id `chain`): ok (chain)\n"
    );

    let bad = xtask(&[
        "check-config",
        "tests/data/bad-configs/rate-limit.bad-enum-unit.json",
        "--filter",
        "rate-limit",
    ]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(
        stdout.contains("\nrate_limit: invalid plugin configuration: rules[0].limit.unit: unknown variant `week`, expected one of `second`, `minute`, `hour`, `day`\n"),
        "{stdout}"
    );

    // No filter named and none to infer: refused, not passed.
    let unknown = xtask(&[
        "check-config",
        "tests/data/bad-configs/rate-limit.bad-enum-unit.json",
    ]);
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
}
