//! `spec-coverage`: the requirement-to-case matrix. Exits 1 when a MUST or MUST NOT of the spec
//! has no case, 0 otherwise. Usually invoked as `cargo xtask spec-coverage`.

use std::process::ExitCode;

use softbus_conformance::coverage::Matrix;

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("usage: spec-coverage\n\nPrints which cases check each requirement of conformance/spec/softbus-v1.md.\nExit status 1 when a MUST/MUST NOT has no case or a case names an undefined requirement.");
        return ExitCode::SUCCESS;
    }
    let reqs = softbus_conformance::spec::requirements();
    let cases = softbus_conformance::cases::all();
    let m = Matrix::build(&reqs, &cases);
    print!("{}", m.render());
    let uncovered = m.uncovered_musts();
    if uncovered.is_empty() && m.unknown.is_empty() {
        println!("every MUST has a case");
        ExitCode::SUCCESS
    } else {
        for r in &uncovered {
            eprintln!(
                "uncovered: [{}] {} (section {})",
                r.id,
                r.keyword.as_str(),
                r.chapter()
            );
        }
        ExitCode::from(1)
    }
}
