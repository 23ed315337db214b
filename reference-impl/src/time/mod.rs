//! TIME: clock synchronization between connected devices and synchronized playout of stream
//! messages (spec section 17), sans-IO.
//!
//! * [`filter`]: NTP's four-timestamp calculation and a minimum-delay clock filter per peer,
//!   giving an offset estimate and an error bound;
//! * [`sync`]: the requester's schedule (accuracy and period levels as OpenHarmony's
//!   `StartTimeSync` names them), request/response matching;
//! * [`present`]: the queue of stream messages waiting for their presentation instant;
//! * [`conn`]: all of it for one connection, as the connection uses it.
//!
//! Every device keeps its own monotonic timebase in microseconds from an epoch it picks (the
//! reference: the instant the endpoint was created); timestamps on the wire are in the sender's
//! timebase, and only offsets cross between timebases.

pub mod conn;
pub mod filter;
pub mod present;
pub mod sync;

pub use conn::{ConnTime, Presented, TimeSnapshot};
pub use filter::{ClockFilter, Estimate, Exchange, Sample, SampleError};
pub use present::{Dropped, Presenter};
pub use sync::{Accuracy, Period, Requester, ResponseError};
