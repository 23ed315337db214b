//! Every conformance case, laid out by spec section. Each module opens with the requirements
//! it checks, quoted from the spec.

use crate::case::Case;

pub mod bridge;
pub mod cap;
pub mod ctrl;
pub mod disc;
pub mod err;
pub mod hs;
pub mod lat;
pub mod live;
pub mod pair;
pub mod perm;
pub mod rec;
pub mod rel;
pub mod sess;

/// All cases, in spec order.
pub fn all() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(disc::cases());
    v.extend(pair::cases());
    v.extend(hs::cases());
    v.extend(rec::cases());
    v.extend(rel::cases());
    v.extend(sess::cases());
    v.extend(cap::cases());
    v.extend(bridge::cases());
    v.extend(perm::cases());
    v.extend(live::cases());
    v.extend(err::cases());
    v.extend(ctrl::cases());
    v.extend(lat::cases());
    v
}
