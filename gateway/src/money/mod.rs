//! Money: what a task costs and who may spend it — KIE credits held exactly, the catalog of
//! models and their prices, the cost rules that hold the team to its budgets, and the
//! receipts that account for every credit KIE charged.

pub mod budget;
pub mod catalog;
pub(crate) mod credits;
pub mod receipt_sync;
pub mod receipts;
