//! Server functions: thin. Each reads the [`ConsoleContext`] the server provides, calls the
//! gateway core, and maps the result to a view type. On the browser side these compile to
//! HTTP calls.
//!
//! Every server function first asks `context::signed_in` for the person and the role it
//! needs (viewer to read, producer to submit, retry and pin, admin for users, keys and rules);
//! the server's guard has already resolved the session. A refusal is a 401 or 403 with a
//! sentence, never a 500.
//!
//! One file per panel (or group of panels that share their data), beside what they start
//! from: `context` (server side: the [`ConsoleContext`], who asks, refusals), [`status`]
//! (console status), [`tasks`] (list, submit, retry, review), [`money`] (the Market, pins and
//! cost rules), [`throttle`] (the rate guard), [`batches`] (a batch submitted whole, and its progress), [`team`] (who am I, users, relay keys, the
//! audit log), [`ledger`] (receipts and spend) and [`library`] (panel 07).

pub(crate) mod batches;
#[cfg(feature = "ssr")]
pub(crate) mod context;
pub(crate) mod ledger;
pub(crate) mod library;
pub(crate) mod money;
pub(crate) mod status;
pub(crate) mod tasks;
pub(crate) mod team;
pub(crate) mod throttle;

pub use money::{budget_status, list_models, delete_cost_rule, set_cost_rule, set_pin};
pub use team::{add_user, audit_log, create_relay_key, end_user_sessions, list_relay_keys, list_users, reset_user_password, revoke_relay_key, set_user_disabled, set_user_projects, set_user_role, require_two_step, two_step_begin, two_step_confirm, two_step_off, two_step_required, two_step_status, whoami};
#[cfg(feature = "ssr")]
pub use team::qr_svg;
pub use batches::submit_batch;
pub use throttle::{bulk_action, set_fair_share, set_pause, throttle_status};
pub use ledger::ledger_report;
pub use library::{create_share_link, delete_library_project, library_inputs, library_items, library_project_copies, library_status, list_share_links, revoke_share_link};
pub use status::load_console_status;
pub use tasks::{MAX_ROWS, TaskFilter, cancel_task, follow_up, list_tasks, rerun_draft, resolve_failure, retry_failures, retry_task, review_board, review_tasks, start_draft, submit_task, task_story, track_lyrics};

#[cfg(feature = "ssr")]
pub use context::{ConsoleContext, StatusMemo};
#[cfg(feature = "ssr")]
pub use money::model_option;
