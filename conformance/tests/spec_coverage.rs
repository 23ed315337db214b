//! Every MUST of the spec has at least one case, and cases only name requirements the spec
//! defines (`cargo xtask spec-coverage` prints the whole matrix).

use softbus_conformance::coverage::Matrix;

#[test]
fn every_must_has_a_case() {
    let reqs = softbus_conformance::spec::requirements();
    let m = Matrix::build(&reqs, &softbus_conformance::cases::all());
    let uncovered: Vec<String> = m.uncovered_musts().iter().map(|r| r.id.clone()).collect();
    assert!(
        uncovered.is_empty(),
        "MUSTs without a case: {uncovered:?}\nRun `cargo xtask spec-coverage` for the matrix."
    );
    assert!(
        m.unknown.is_empty(),
        "cases name undefined requirements: {:?}",
        m.unknown
    );
}

#[test]
fn case_ids_are_unique_and_well_formed() {
    let cases = softbus_conformance::cases::all();
    let mut ids: Vec<&str> = cases.iter().map(|c| c.id).collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate case IDs");
    for c in &cases {
        // A case run again over another link is `<ID>@<transport>`.
        let base = match c.id.split_once('@') {
            Some((base, t)) => {
                assert!(
                    ["zigbee", "ble"].contains(&t) && c.transport == t,
                    "case {} names link {t:?} but runs over {}",
                    c.id,
                    c.transport
                );
                base
            }
            None => c.id,
        };
        let parts: Vec<&str> = base.split('-').collect();
        assert!(
            parts.len() == 3
                && parts[0] == "SB"
                && !parts[1].is_empty()
                && parts[1].bytes().all(|b| b.is_ascii_uppercase())
                && parts[2].len() == 3
                && parts[2].bytes().all(|b| b.is_ascii_digit()),
            "case ID {} is not SB-<SECTION>-NNN",
            c.id
        );
        assert!(!c.requirements.is_empty(), "{} names no requirement", c.id);
        assert!(
            softbus_harness::pics::Expr::parse(c.pics).is_ok(),
            "{}: bad PICS {}",
            c.id,
            c.pics
        );
    }
}
