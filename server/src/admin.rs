//! Administration commands against the configured store (Redis, or the embedded store when
//! no server holds it):
//! - `control-room key create|list|revoke`: relay keys; a new key is printed once;
//! - `control-room budget set|show`: cost rules in US dollars, with their spend meters;
//! - `control-room receipts export --project P [--format json|csv] [--from --to]`: a receipt;
//! - `control-room queue share --project P --weight N [--max-queued N]`, `queue shares`: the
//!   queue's fair shares; `queue pause|resume [--project P]`, `queue pauses`: intake held;
//! - `control-room batch submit --file F --name N --project P --model M [--csv]`, `batch list`:
//!   a batch admitted whole or not at all, and where each stands;
//! - `control-room user add|list|set-role|disable|enable|reset-password`: people and roles;
//!   passwords are read from standard input, never from flags.
//!
//! Changes are made as the command line's [`Actor`] and recorded in the audit log as `cli`.
//! The commands' grammar ([`Command`], parsed with the serving flags in [`crate::config::Cli`])
//! is here with what each does.

use std::io::{BufRead, Read, Write};

use crate::config::Config;
use crate::{ServerError, open_store};
use gateway::team::accounts::{self, Actor, Role};
use gateway::money::budget::{self, CostRule, money};
use gateway::team::relay_keys;

/// `control-room <command>`: administration against the configured store.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Relay keys for programs using the KIE-compatible API under /kie.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Cost rules: caps in US dollars per job, per rolling 24 hours and in total.
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// Receipts: one per production, in KIE's actual credits.
    #[command(subcommand)]
    Receipts(ReceiptsCommand),
    /// The queue: fair shares (a project's weight in the rotation and its queue quota),
    /// pauses on intake, and bulk actions.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// People who sign in to the console, and their roles.
    #[command(subcommand)]
    User(UserCommand),
    /// One task: where it stands (its place and wait in the queue) and its story.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Batches: many tasks submitted as one, admitted whole or not at all.
    #[command(subcommand)]
    Batch(BatchCommand),
    /// Share links: one project's Library, read-only, for people without an account.
    #[command(subcommand)]
    Share(ShareCommand),
    /// The MCP server on standard input and output, for a desktop agent: relayed to a running
    /// console's /mcp (CONTROL_ROOM_URL) with a relay key (CONTROL_ROOM_KEY).
    Mcp(crate::mcp::bridge::McpArgs),
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ShareCommand {
    /// Make a link to a project's Library; prints it once (from PUBLIC_URL).
    Create {
        #[arg(long)]
        project: String,
        /// How long it works: 1–90 days.
        #[arg(long, default_value_t = 14)]
        days: u32,
        /// Ask for a password, read from standard input (one line).
        #[arg(long)]
        password: bool,
        /// Also show the project's receipt totals.
        #[arg(long)]
        receipts: bool,
    },
    /// List links (id, project, made by, until, password, uses, state).
    List,
    /// End a link at once.
    Revoke {
        /// The link's id (from `share list`).
        id: String,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BatchCommand {
    /// Submit a file of prompts (one a line) or a CSV (--csv: a header of the model's fields,
    /// then a row a task) as one named batch: every task is admitted, or none (a cost rule or
    /// the queue quota that would refuse one refuses the batch). Needs the console's KIE key
    /// (the running console sends the tasks). With --preview, only says what it would submit.
    Submit {
        /// The rows: a path, or - for standard input.
        #[arg(long)]
        file: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        model: String,
        /// The file is a CSV with a header (else one prompt a line).
        #[arg(long)]
        csv: bool,
        /// Tasks per row, 1–10.
        #[arg(long, default_value_t = 1)]
        variants: u32,
        /// high, normal or low (default: the project's).
        #[arg(long)]
        priority: Option<String>,
        #[arg(long)]
        preview: bool,
    },
    /// The newest batches and where each stands.
    List,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum TaskCommand {
    /// Its state, place and expected wait while queued, costs, and every step of its story.
    Show {
        /// The Control Room's id (cr_…) or KIE's task id.
        id: String,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum QueueCommand {
    /// Set a project's share: its owners send up to WEIGHT tasks per turn of the rotation,
    /// each may have MAX_QUEUED waiting, and its tasks naming no priority get PRIORITY. Weight
    /// 1 with no quota and normal priority removes the share.
    Share {
        #[arg(long)]
        project: String,
        /// 1 to 100.
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// Each owner's queue quota in the project (default: QUEUE_MAX_PER_OWNER).
        #[arg(long)]
        max_queued: Option<u32>,
        /// Its tasks' priority when they name none: high, normal or low.
        #[arg(long, default_value = "normal")]
        priority: String,
    },
    /// List the projects' shares.
    Shares,
    /// Pause intake, for the whole team or one project: queued tasks stay queued and none is
    /// sent to KIE until it is resumed (on every instance, across restarts).
    Pause {
        /// Only this project (default: the whole team).
        #[arg(long)]
        project: Option<String>,
        /// Shown to everyone with the pause.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume intake paused with `queue pause` (the same --project).
    Resume {
        #[arg(long)]
        project: Option<String>,
    },
    /// List the pauses in force.
    Pauses,
    /// Cancel or retry every task a filter selects: shows how many and what they are
    /// estimated at; with --run, starts it (the running console does it, a page at a time).
    Bulk {
        /// cancel (queued tasks) or retry (failed or expired ones).
        #[arg(long)]
        action: String,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// A person's email or key:<id>.
        #[arg(long)]
        owner: Option<String>,
        /// A failure class (rate_limited, upstream, callback_lost…).
        #[arg(long)]
        class: Option<String>,
        /// A batch's name.
        #[arg(long)]
        batch: Option<String>,
        /// YYYY-MM-DD (UTC), or a time ago (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// YYYY-MM-DD (UTC): created before that day.
        #[arg(long)]
        until: Option<String>,
        /// Start it (without: only the preview).
        #[arg(long)]
        run: bool,
    },
    /// List the bulk actions and where each stands.
    BulkJobs,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ReceiptsCommand {
    /// Print a project's receipt (every ended task a line) as JSON or CSV.
    Export {
        #[arg(long)]
        project: String,
        /// json or csv.
        #[arg(long, default_value = "json")]
        format: String,
        /// First day (UTC, YYYY-MM-DD), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// Last day (UTC, YYYY-MM-DD), inclusive.
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from standard input (one line), never from a flag.
    Add {
        email: String,
        /// admin, producer or viewer.
        #[arg(long, default_value = "producer")]
        role: String,
        /// Display name (default: the part of the email before @).
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List users (email, name, role, state).
    List,
    /// Change a user's role (admin, producer or viewer).
    SetRole { email: String, role: String },
    /// Disable a user: their sessions end at once and they cannot sign in.
    Disable { email: String },
    /// Enable a disabled user again.
    Enable { email: String },
    /// Set a new password, read from standard input; the user's sessions end.
    ResetPassword { email: String },
    /// Turn off a user's two-step sign-in (a lost device): their password alone opens the
    /// account until they set it up again.
    TwoStepOff { email: String },
    /// Let an admin sign in with a password when `PASSWORD_SIGNIN=off` (the way in when the
    /// identity provider is down); `--off` takes it back.
    BreakGlass {
        email: String,
        #[arg(long)]
        off: bool,
    },
    /// Limit a producer or viewer to some projects (`--set trailer,teaser`): they see and
    /// touch nothing of the others. `--all` lifts the limit. Without either, shows them.
    Projects {
        email: String,
        /// Comma-separated project names.
        #[arg(long, conflicts_with = "all")]
        set: Option<String>,
        /// Every project again.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BudgetCommand {
    /// Set the rule for the team, a project, a user, a relay key, or either in a project. Caps
    /// not given are removed; a rule with no cap is deleted.
    Set {
        /// The project the rule holds for (default: every project).
        #[arg(long)]
        project: Option<String>,
        /// The person the rule holds for (default: everyone).
        #[arg(long, conflicts_with = "key")]
        user: Option<String>,
        /// The relay key (its id) the rule holds for.
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        caps: CapFlags,
    },
    /// Show every rule with its spend meters and the recent alerts.
    Show,
}

/// `--per-job USD`, `--per-day USD`, `--total USD`: one flag per kind of cap, from
/// [`budget::CapKind::ALL`] (a new kind needs nothing here).
#[derive(Debug, Clone, Default)]
pub struct CapFlags(Vec<(budget::CapKind, f64)>);

impl clap::FromArgMatches for CapFlags {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(CapFlags(budget::CapKind::ALL.into_iter().filter_map(|k| m.get_one::<f64>(k.name()).map(|usd| (k, *usd))).collect()))
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for CapFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        budget::CapKind::ALL.into_iter().fold(cmd, |cmd, k| {
            let spec = k.spec();
            cmd.arg(clap::Arg::new(spec.name).long(spec.flag).value_name("USD").value_parser(clap::value_parser!(f64)).help(spec.help))
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeyCommand {
    /// Create a key; it is printed once (the store keeps only its hash).
    Create {
        /// The project tasks submitted with this key belong to.
        #[arg(long)]
        project: String,
        /// A label ("render farm").
        #[arg(long)]
        name: String,
    },
    /// List keys (id, label, project, created, last used, revoked).
    List,
    /// Revoke a key at once, on every instance.
    Revoke {
        /// The key's id (from `key list`).
        id: String,
    },
}

/// Runs one administration command, reading passwords from `input` and writing to `out`.
pub async fn command(config: &Config, cmd: Command, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<(), ServerError> {
    match cmd {
        Command::Key(cmd) => key_command(config, cmd, out).await,
        Command::Budget(cmd) => budget_command(config, cmd, out).await,
        Command::User(cmd) => user_command(config, cmd, input, out).await,
        Command::Receipts(cmd) => receipts_command(config, cmd, out).await,
        Command::Queue(cmd) => queue_command(config, cmd, out).await,
        Command::Task(TaskCommand::Show { id }) => task_show(config, &id, out).await,
        Command::Batch(cmd) => batch_command(config, cmd, input, out).await,
        Command::Share(cmd) => share_command(config, cmd, input, out).await,
        // Needs no configuration of its own: `main` runs it before reading any.
        Command::Mcp(args) => crate::mcp::bridge::run(args).await.map_err(ServerError::Store),
    }
}

/// `batch submit|list`: a batch is written through a lifecycle of this configuration (its
/// KIE key, queue quota and intake policy), whose workers do not run here: the console's
/// dispatcher sends the tasks.
async fn batch_command(config: &Config, cmd: BatchCommand, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<(), ServerError> {
    use gateway::tasks::batch::{self, RowsFormat};
    use gateway::tasks::lifecycle::batch::BatchRequest;
    let store = open_store(&config.store).await?;
    let fail = |e: gateway::StoreError| ServerError::Store(e.to_string());
    match cmd {
        BatchCommand::Submit { file, name, project, model, csv, variants, priority, preview } => {
            let mut rows = String::new();
            let bound = batch::MAX_ROWS_BYTES as u64 + 1;
            if file == "-" {
                input.take(bound).read_to_string(&mut rows)?;
            } else {
                std::fs::File::open(&file).map_err(|e| ServerError::Store(format!("cannot read {file}: {e}")))?.take(bound).read_to_string(&mut rows)?;
            }
            let priority = priority.map(|p| p.parse()).transpose().map_err(ServerError::Store)?;
            let format = if csv { RowsFormat::Csv } else { RowsFormat::Prompts };
            let request = BatchRequest { name, owner: Actor::cli().who, project, model, format, rows, variants, priority, ..Default::default() };
            let metrics = std::sync::Arc::new(gateway::metrics::Metrics::new());
            let kie = crate::upstream::Upstream::from_config(config).client(std::time::Duration::from_secs(30), 3, &metrics);
            let options = gateway::LifecycleOptions { rate_rules: config.rate_guard.clone(), rate_margin: config.rate_margin, queue_max_per_owner: config.queue_max_per_owner, paused_intake: config.queue_paused_intake, ..Default::default() };
            let lc = gateway::Lifecycle::new(store, kie, std::sync::Arc::new(crate::load_catalog(config.catalog_file.as_deref())?), options);
            let refused = |e: gateway::tasks::lifecycle::SubmitError| ServerError::Store(e.public_message());
            let (tasks, estimate) = lc.plan_batch(&request).map_err(refused)?;
            if preview {
                writeln!(out, "Batch {}: {} tasks of {}, estimated {} credits (${:.2}) together. Nothing submitted: leave out --preview to submit it.", request.name.trim(), tasks.len(), request.model, estimate, estimate.usd())?;
                return Ok(());
            }
            let b = lc.submit_batch(request).await.map_err(refused)?;
            writeln!(out, "Batch {} admitted: {} tasks queued, estimated {} credits (${:.2}). The console sends them; `control-room batch list` shows how far they are.", b.name, b.tasks, b.estimate, b.estimate.usd())?;
        }
        BatchCommand::List => {
            let listed = batch::list(store.as_ref()).await.map_err(fail)?;
            if listed.batches.is_empty() {
                writeln!(out, "No batches.")?;
            }
            for b in listed.batches.into_iter().take(20) {
                let p = batch::progress(store.as_ref(), b).await.map_err(fail)?;
                let b = &p.batch;
                let why = b.why.as_deref().map(|w| format!(" · {w}")).unwrap_or_default();
                writeln!(out, "{} · {} · project {} · {:?}: {} · estimated {} credits{why}", b.name, b.model, b.project, b.state, p.line(), b.estimate)?;
            }
        }
    }
    Ok(())
}

/// `task show`: read through a lifecycle of this configuration's rate guard (no KIE client:
/// nothing is sent), so the place and wait are the queue's own.
async fn task_show(config: &Config, id: &str, out: &mut dyn Write) -> Result<(), ServerError> {
    let store = open_store(&config.store).await?;
    let options = gateway::LifecycleOptions { rate_rules: config.rate_guard.clone(), rate_margin: config.rate_margin, queue_max_per_owner: config.queue_max_per_owner, ..Default::default() };
    let catalog = std::sync::Arc::new(gateway::money::catalog::Catalog::builtin());
    let lc = gateway::Lifecycle::new(store, None, catalog, options);
    let fail = |e: gateway::StoreError| ServerError::Store(e.to_string());
    let t = lc.find(id.trim()).await.map_err(fail)?.ok_or_else(|| ServerError::Store(format!("No task {}.", id.trim())))?;
    writeln!(out, "{} · {} · project {} · {}", t.id, t.model, t.project, t.owner)?;
    let waits = match lc.place(&t).await.map_err(fail)? {
        Some(w) => format!(" — #{} in the rate guard's queue, ≈ {} s", w.position, w.eta_ms.div_ceil(1000)),
        None => t.note.as_deref().map(|n| format!(" — {n}")).unwrap_or_default(),
    };
    writeln!(out, "state: {}{waits}", t.state)?;
    if let Some(why) = &t.fail_msg {
        writeln!(out, "why: {why}")?;
    }
    let charged = t.actual_cost.map(|c| format!("; charged {c}{}", t.charge_basis.map(|b| format!(" ({})", b.as_str())).unwrap_or_default())).unwrap_or_default();
    writeln!(out, "cost: estimate {} credits{charged}", t.estimated_cost)?;
    if let Some(k) = &t.kie_task_id {
        writeln!(out, "KIE's task id: {k}")?;
    }
    if t.story.dropped > 0 {
        writeln!(out, "… {} earlier steps dropped", t.story.dropped)?;
    }
    for b in &t.story.beats {
        let times = if b.times > 1 { format!(" ×{}", b.times) } else { String::new() };
        writeln!(out, "{}  {:<9}  {}{times}  · {}", gateway::team::audit::utc(b.at_ms), b.kind.as_str(), b.text, b.instance)?;
    }
    Ok(())
}

/// Runs one queue command, writing to `out`.
pub async fn queue_command(config: &Config, cmd: QueueCommand, out: &mut dyn Write) -> Result<(), ServerError> {
    use gateway::tasks::{fair_share, pause};
    let store = open_store(&config.store).await?;
    let fail = |e: gateway::tasks::QueueSettingError| ServerError::Store(e.to_string());
    match cmd {
        QueueCommand::Share { project, weight, max_queued, priority } => {
            let priority = priority.parse().map_err(ServerError::Store)?;
            fair_share::set(store.as_ref(), &Actor::cli(), &project, weight, max_queued, priority).await.map_err(|e| ServerError::Store(e.to_string()))?;
            match fair_share::shares(store.as_ref()).await.map_err(|e| ServerError::Store(e.to_string()))?.into_iter().find(|s| s.project == project.trim()) {
                Some(s) => writeln!(out, "Project {}: {}.", s.project, s.text())?,
                None => writeln!(out, "Project {}: the default share (weight 1, QUEUE_MAX_PER_OWNER waiting per owner).", project.trim())?,
            }
        }
        QueueCommand::Shares => {
            let shares = fair_share::shares(store.as_ref()).await.map_err(|e| ServerError::Store(e.to_string()))?;
            if shares.is_empty() {
                writeln!(out, "Every project has the default share (weight 1, QUEUE_MAX_PER_OWNER waiting per owner).")?;
            }
            for s in shares {
                writeln!(out, "{}: {} (set by {})", s.project, s.text(), s.updated_by)?;
            }
        }
        QueueCommand::Pause { project, reason } => {
            let changed = pause::set(store.as_ref(), &Actor::cli(), project.as_deref(), true, reason.as_deref()).await.map_err(fail)?;
            let what = project.as_deref().map_or("The team's intake".to_string(), |p| format!("Project {}'s intake", p.trim()));
            writeln!(out, "{what} {}.", if changed { "is paused: nothing of it is sent until `control-room queue resume`" } else { "was already paused" })?;
        }
        QueueCommand::Resume { project } => {
            let changed = pause::set(store.as_ref(), &Actor::cli(), project.as_deref(), false, None).await.map_err(fail)?;
            let what = project.as_deref().map_or("The team's intake".to_string(), |p| format!("Project {}'s intake", p.trim()));
            writeln!(out, "{what} {}.", if changed { "is resumed" } else { "was not paused" })?;
        }
        QueueCommand::Bulk { action, state, project, model, owner, class, batch, since, until, run } => {
            use gateway::tasks::bulk::{self, BulkAction, BulkFilter, FilterWords};
            let bad = |e: bulk::BulkError| ServerError::Store(e.to_string());
            let action = action.parse::<BulkAction>().map_err(ServerError::Store)?;
            let words = FilterWords { state: state.as_deref(), model: model.as_deref(), project: project.as_deref(), owner: owner.as_deref(), class: class.as_deref(), batch: batch.as_deref(), since: since.as_deref(), until: until.as_deref() };
            let filter = BulkFilter::from_words(&words, gateway::store::now_ms()).map_err(bad)?;
            let what = filter.describe();
            let (p, job) = if run {
                let job = bulk::start(store.as_ref(), action, filter, &Actor::cli()).await.map_err(bad)?;
                (job.preview.clone(), Some(job.id))
            } else {
                (bulk::preview(store.as_ref(), action, &filter).await.map_err(bad)?, None)
            };
            let more = if p.more { " (more match: the oldest are taken)" } else { "" };
            writeln!(out, "{} {} tasks ({what}): estimated {} credits{more}.", action.as_str(), p.count, p.estimate)?;
            match job {
                Some(id) => writeln!(out, "Started {id}: the console does it a page at a time (`control-room queue bulk-jobs`).")?,
                None => writeln!(out, "Nothing done: add --run to start it.")?,
            }
        }
        QueueCommand::BulkJobs => {
            let jobs = gateway::tasks::bulk::jobs(store.as_ref()).await.map_err(|e| ServerError::Store(e.to_string()))?;
            if jobs.is_empty() {
                writeln!(out, "No bulk actions.")?;
            }
            for j in jobs {
                let why = j.reason.as_deref().map(|r| format!(" · {r}")).unwrap_or_default();
                writeln!(out, "{} {} ({}) by {}: {:?}, {} done, {} refused of {}{why}", j.id, j.action.as_str(), j.filter.describe(), j.by_name, j.state, j.done, j.refused, j.preview.count)?;
            }
        }
        QueueCommand::Pauses => {
            let pauses = pause::read(store.as_ref()).await.map_err(|e| ServerError::Store(e.to_string()))?;
            if pauses.is_empty() {
                writeln!(out, "Nothing is paused.")?;
            }
            for p in pauses.team.iter().map(|_| "").chain(pauses.projects.keys().map(String::as_str)) {
                let scope = if p.is_empty() { "team".to_string() } else { format!("project {p}") };
                writeln!(out, "{scope}: {}", pauses.why(p).unwrap_or_default())?;
            }
        }
    }
    Ok(())
}

/// Runs one receipts command, writing to `out`.
pub async fn receipts_command(config: &Config, cmd: ReceiptsCommand, out: &mut dyn Write) -> Result<(), ServerError> {
    let store = open_store(&config.store).await?;
    match cmd {
        ReceiptsCommand::Export { project, format, from, to } => {
            let base = config.public_base();
            let r = gateway::money::receipts::receipt(store.as_ref(), project.trim(), from.as_deref(), to.as_deref(), base.as_deref())
                .await
                .map_err(|e| ServerError::Store(e.to_string()))?;
            match format.as_str() {
                "json" => writeln!(out, "{}", serde_json::to_string_pretty(&r).map_err(|e| ServerError::Store(e.to_string()))?)?,
                "csv" => write!(out, "{}", gateway::money::receipts::csv(&r))?,
                other => return Err(ServerError::Store(format!("--format must be json or csv, not {other}"))),
            }
        }
    }
    Ok(())
}

/// `share create|list|revoke`.
async fn share_command(config: &Config, cmd: ShareCommand, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<(), ServerError> {
    use gateway::team::share_links::{self, NewLink};
    let store = open_store(&config.store).await?;
    let fail = |e: share_links::ShareError| ServerError::Store(e.to_string());
    match cmd {
        ShareCommand::Create { project, days, password, receipts } => {
            let password = if password { Some(read_password(input)?) } else { None };
            let new = NewLink { project: &project, days, password: password.as_deref(), receipts };
            let (token, link) = share_links::create(store.as_ref(), &Actor::cli(), &new).await.map_err(fail)?;
            let path = format!("{}{}", crate::share::PREFIX, token.expose());
            match config.public_base() {
                Some(base) => writeln!(out, "{base}{path}")?,
                None => writeln!(out, "{path}   (set PUBLIC_URL to print the whole address)")?,
            }
            writeln!(out, "Share link {} for project {:?} until {} (UTC){}. Shown once: the store keeps only its hash.", link.id, link.project, gateway::money::receipts::day(link.expires_ms), if link.password_hash.is_some() { ", with a password" } else { "" })?;
        }
        ShareCommand::List => {
            let links = share_links::list(store.as_ref(), &Actor::cli()).await.map_err(fail)?;
            writeln!(out, "{:<13} {:<24} {:<28} {:<11} {:<9} {:>6} STATE", "ID", "PROJECT", "MADE BY", "UNTIL", "PASSWORD", "USES")?;
            let now = gateway::store::now_ms();
            for l in links {
                let state = l.link.state(now);
                let until = gateway::money::receipts::day(l.link.expires_ms);
                writeln!(out, "{:<13} {:<24} {:<28} {:<11} {:<9} {:>6} {state}", l.link.id, l.link.project, l.link.created_by, until, if l.link.password_hash.is_some() { "yes" } else { "no" }, l.uses)?;
            }
        }
        ShareCommand::Revoke { id } => {
            let link = share_links::revoke(store.as_ref(), &Actor::cli(), &id).await.map_err(fail)?;
            writeln!(out, "Share link {} of {:?} is revoked: it opens nothing from now on.", link.id, link.project)?;
        }
    }
    Ok(())
}

/// One line from `input`, without its line ending: a password.
fn read_password(input: &mut dyn BufRead) -> Result<String, ServerError> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(ServerError::Store("give the password on standard input (one line), e.g. `read -rs P; echo \"$P\" | control-room user add …`".into()));
    }
    Ok(password)
}

/// Runs one user command, writing to `out`.
pub async fn user_command(config: &Config, cmd: UserCommand, input: &mut dyn BufRead, out: &mut dyn Write) -> Result<(), ServerError> {
    let store = open_store(&config.store).await?;
    let store = store.as_ref();
    let fail = |e: accounts::AccountError| ServerError::Store(e.to_string());
    let role = |r: &str| r.parse::<Role>().map_err(fail);
    let by = Actor::cli();
    match cmd {
        UserCommand::Add { email, role: r, name } => {
            let role = role(&r)?;
            let password = read_password(input)?;
            let u = accounts::add(store, &by, &email, &name, role, &password).await.map_err(fail)?;
            writeln!(out, "Added {} ({}) as {}.", u.email, u.name, u.role)?;
        }
        UserCommand::List => {
            let users = accounts::list(store).await.map_err(fail)?;
            if users.is_empty() {
                writeln!(out, "No users yet. Add the first admin: control-room user add EMAIL --role admin (password on standard input).")?;
            }
            writeln!(out, "{:<32} {:<24} {:<9} STATE", "EMAIL", "NAME", "ROLE")?;
            for u in users {
                let mut state = vec![if u.disabled { "disabled" } else { "active" }];
                state.extend(u.federated.is_some().then_some("single sign-on"));
                state.extend(u.break_glass.then_some("break-glass"));
                let projects = if u.projects.is_empty() { String::new() } else { format!(", projects {}", u.projects.join(" ")) };
                writeln!(out, "{:<32} {:<24} {:<9} {}{projects}", u.email, u.name, u.role, state.join(", "))?;
            }
        }
        UserCommand::SetRole { email, role: r } => {
            let u = accounts::set_role(store, &by, &email, role(&r)?).await.map_err(fail)?;
            writeln!(out, "{} is now {}.", u.email, u.role)?;
        }
        UserCommand::Disable { email } => {
            let u = accounts::set_disabled(store, &by, &email, true).await.map_err(fail)?;
            writeln!(out, "Disabled {}; their sessions have ended.", u.email)?;
        }
        UserCommand::Enable { email } => {
            let u = accounts::set_disabled(store, &by, &email, false).await.map_err(fail)?;
            writeln!(out, "Enabled {}.", u.email)?;
        }
        UserCommand::ResetPassword { email } => {
            let password = read_password(input)?;
            let u = accounts::reset_password(store, &by, &email, &password).await.map_err(fail)?;
            writeln!(out, "New password set for {}; their sessions have ended.", u.email)?;
        }
        UserCommand::TwoStepOff { email } => {
            gateway::team::second_factor::turn_off(store, &by, &email, None).await.map_err(fail)?;
            writeln!(out, "Two-step sign-in is off for {email}.")?;
        }
        UserCommand::BreakGlass { email, off } => {
            let u = accounts::set_break_glass(store, &by, &email, !off).await.map_err(fail)?;
            let what = if u.break_glass { "may sign in with a password even when PASSWORD_SIGNIN=off" } else { "is no longer break-glass" };
            writeln!(out, "{} {what}.", u.email)?;
        }
        UserCommand::Projects { email, set, all } => {
            let u = match (set, all) {
                (Some(list), _) => gateway::team::membership::set_projects(store, &by, &email, &list).await.map_err(fail)?,
                (None, true) => gateway::team::membership::set_projects(store, &by, &email, "").await.map_err(fail)?,
                (None, false) => accounts::get(store, &email).await.map_err(fail)?.ok_or_else(|| ServerError::Store(format!("no user {email}")))?,
            };
            let reach = gateway::team::membership::Membership::of(&u);
            let note = if u.role == gateway::team::accounts::Role::Admin && !u.projects.is_empty() { " (an admin: the list holds once they are not)" } else { "" };
            writeln!(out, "{} reaches {reach}{note}.", u.email)?;
        }
    }
    Ok(())
}

fn when(ms: Option<u64>) -> String {
    ms.map_or("-".into(), |ms| format!("{}", ms / 1000))
}

/// Runs one key command, writing to `out`.
pub async fn key_command(config: &Config, cmd: KeyCommand, out: &mut dyn Write) -> Result<(), ServerError> {
    let store = open_store(&config.store).await?;
    let fail = |e: relay_keys::RelayKeyError| ServerError::Store(e.to_string());
    match cmd {
        KeyCommand::Create { project, name } => {
            let new = relay_keys::create(store.as_ref(), &Actor::cli(), &project, &name).await.map_err(fail)?;
            writeln!(out, "Relay key {} for project {:?} ({}).", new.key.id, new.key.project, new.key.name)?;
            writeln!(out, "key:            {}", new.text.expose())?;
            writeln!(out, "webhook secret: {}", new.key.webhook_secret)?;
            writeln!(out, "Shown once: the store keeps only the key's hash. Use it as the Bearer key with base URL <console>/kie.")?;
        }
        KeyCommand::List => {
            let keys = relay_keys::list(store.as_ref()).await.map_err(fail)?;
            writeln!(out, "{:<14} {:<24} {:<20} {:>12} {:>12} {:>12}", "ID", "NAME", "PROJECT", "CREATED", "LAST USED", "REVOKED")?;
            for k in keys {
                writeln!(out, "{:<14} {:<24} {:<20} {:>12} {:>12} {:>12}", k.id, k.name, k.project, k.created_ms / 1000, when(k.last_used_ms), when(k.revoked_ms))?;
            }
            writeln!(out, "(times are Unix seconds)")?;
        }
        KeyCommand::Revoke { id } => {
            let k = relay_keys::revoke(store.as_ref(), &Actor::cli(), id.trim()).await.map_err(fail)?;
            writeln!(out, "Revoked relay key {} ({}, project {}).", k.id, k.name, k.project)?;
        }
    }
    Ok(())
}

/// Runs one budget command, writing to `out`.
pub async fn budget_command(config: &Config, cmd: BudgetCommand, out: &mut dyn Write) -> Result<(), ServerError> {
    let store = open_store(&config.store).await?;
    let fail = |e: budget::BudgetError| ServerError::Store(e.to_string());
    match cmd {
        BudgetCommand::Set { project, user, key, caps } => {
            let flags: Vec<String> = caps.0.iter().map(|(k, _)| format!("--{}", k.spec().flag)).collect();
            let caps = caps.0.iter().zip(&flags).map(|((k, usd), flag)| (*k, flag.as_str(), *usd));
            let user = key.map(|id| relay_keys::owner_of(&id)).or(user);
            let rule = CostRule::in_usd(project, user, caps).map_err(fail)?;
            let label = rule.target.label();
            let removed = !rule.has_caps();
            let before = budget::set_rule(store.as_ref(), &Actor::cli(), rule.clone()).await.map_err(fail)?;
            if removed {
                writeln!(out, "{}", if before.is_some() { format!("Removed the cost rule for {label}.") } else { format!("There was no cost rule for {label}.") })?;
            } else {
                writeln!(out, "Cost rule for {label}: {}.", rule.caps_text())?;
            }
        }
        BudgetCommand::Show => {
            let rules = budget::rules(store.as_ref()).await.map_err(|e| ServerError::Store(e.to_string()))?;
            if rules.is_empty() {
                writeln!(out, "No cost rules: nothing caps spend. Set one with `control-room budget set --project NAME --per-day USD`.")?;
            }
            for r in &rules {
                writeln!(out, "{} (set by {}):", r.target.label(), r.updated_by)?;
                // A summed cap shows its meter; a per-job cap its amount.
                let meters = budget::meters(store.as_ref(), std::slice::from_ref(r)).await.map_err(|e| ServerError::Store(e.to_string()))?;
                for (kind, cap) in r.caps.iter() {
                    let name = kind.spec().short;
                    match meters.iter().find(|m| m.kind == kind) {
                        Some(m) => writeln!(out, "  {name:<15} {} used of {} ({} %)", money(m.used), money(m.cap), m.percent())?,
                        None => writeln!(out, "  {name:<15} {}", money(cap))?,
                    }
                }
            }
            let alerts = budget::alerts(store.as_ref()).await.map_err(|e| ServerError::Store(e.to_string()))?;
            for a in alerts.iter().take(10) {
                writeln!(out, "alert at {} (Unix s): {}", a.at_ms / 1000, a.message())?;
            }
        }
    }
    Ok(())
}
