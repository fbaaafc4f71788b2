//! Balancing policy: which backend a new session goes to, and which live sessions to move where.
//!
//! Pure functions over a snapshot of backend health and load, and the health probe
//! ([`probe_greeting`]) that judges a backend's first packet. They decide; the driver executes
//! (connects, starts migrations) and calls them again on its next tick with a fresh snapshot. Two
//! decisions live here:
//!
//! - [`pick_backend`]: a new session goes to the healthy, non-draining backend with the fewest
//!   sessions (ties: the lowest index, so the same snapshot always gives the same answer);
//! - [`plan_rebalance`]: a bounded list of [`Move`]s per tick that first evacuates backends that
//!   must be left (draining, or failing health checks while they still answer), then evens out
//!   session counts among the others. A hysteresis threshold ([`RebalancePolicy::tolerance`]) and
//!   the rule that every move strictly lowers the imbalance mean that plans converge and then stay
//!   empty: no migration storms, no oscillation.

mod health;
mod pick;
mod plan;

pub use health::{
    probe_greeting, Probe, Unhealthy, ER_CON_COUNT_ERROR, ER_HOST_IS_BLOCKED, MAX_GREETING_SIZE,
};
pub use pick::{pick_backend, BackendLoad};
pub use plan::{plan_rebalance, Move, RebalancePolicy, SessionLoad};
