//! Every conformance case, laid out by spec section. Each module opens with the requirements
//! it checks, quoted from the spec.

use crate::case::Case;

pub mod disc;
pub mod pair;

/// All cases, in spec order.
pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(disc::cases());
    v.extend(pair::cases());
    v
}
