//! View types: plain serde structs shared by the server (which fills them from real records
//! and configuration) and the browser (which renders them). These structs are what crosses the
//! wire: no KIE key, password or session token ever goes in here. The one secret that does is
//! a relay key at its creation ([`NewRelayKey`]), shown once to the admin who made it.
//!
//! One file per panel (or group of panels that share their data); every type is re-exported
//! here, so `crate::view::TaskRow` names it wherever it lives.

mod status;
mod tasks;
mod ledger;
mod library;
mod money;
mod throttle;
mod team;

pub use status::*;
pub use tasks::*;
pub use ledger::*;
pub use library::*;
pub use money::*;
pub use throttle::*;
pub use team::*;
