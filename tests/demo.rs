//! The demos run as a user runs them: the real binary, each business's day over real TCP,
//! exit 0 and a readable account.

use std::process::Command;

fn demo(args: &[&str]) -> (bool, String, String) {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cardswitch"))
        .arg("demo")
        .args(args)
        .env("CARDSWITCH_HOME", home.path())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

#[test]
fn the_retail_day_registers_a_member_loads_with_bonus_earns_points_by_category_and_refunds() {
    let (ok, out, err) = demo(&["--catalog", "retail"]);
    assert!(ok, "{out}\n{err}");
    for line in [
        "register the holder 张伟 against his ID card (M1)\n    → approved",
        "5% bonus under the rule in force (V3)\n    → approved  amount 3000.00",
        "gross 200.00 − discount 10.00 = net 190.00  points +190",
        "1 point per 5.00 (K2)\n    → approved  gross 1000.00 − discount 50.00 = net 950.00  points +190",
        "points back in proportion (T5)\n    → approved  amount 475.00  points -95",
        "ID **************101X",
        "outstanding",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn the_hotel_day_holds_a_deposit_at_check_in_and_captures_at_check_out() {
    let (ok, out, err) = demo(&["--catalog", "hotel"]);
    assert!(ok, "{out}\n{err}");
    for line in [
        "check-in: 1,000.00 deposit held on the VIP card (T4)\n    → approved  amount 1000.00",
        "held 1000.00 (active)",
        "check-out: two nights 860.00 captured",
        "the duty manager overrides the limit (R2, O1)\n    → approved",
        "transfer_in",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn an_unknown_demo_catalog_is_a_clear_error() {
    let (ok, _, err) = demo(&["--catalog", "casino"]);
    assert!(!ok);
    assert!(err.contains("the demo catalogs are `retail` and `hotel`"), "{err}");
}
