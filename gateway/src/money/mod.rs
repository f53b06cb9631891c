//! Money: what a task costs and who may spend it — KIE credits held exactly, the catalog of
//! models and their prices, and the cost rules that hold the team to its budgets.

pub mod budget;
pub mod catalog;
pub mod credits;
