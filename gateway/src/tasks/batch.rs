//! Batches: many tasks of one model submitted as one named unit — a list of prompts (one a
//! line) or a CSV (a header of the model's field names, then one row a task), each row taken
//! `variants` times — then followed as a unit: its progress counted from the store's indexes
//! (never by reading its tasks), retried or cancelled with the bulk actions' batch filter, and
//! downloaded as one zip of its Library copies.
//!
//! This file is what a batch *is* (its rows, its record, the list of them); admitting one
//! whole is `lifecycle::batch`. A relay client names a batch with `X-Control-Room-Batch`: its
//! tasks join it one by one (an *open* batch), each admitted on its own.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::money::credits::Credits;
use crate::store::{Store, StoreResult, edit_doc, read_doc};
use crate::tasks::task::{NAME_RULE, TaskState, valid_name};

/// Where the list of batches is kept.
const LIST_KEY: &str = "batch:list";
/// Most tasks one batch submits (rows × variants).
pub const MAX_BATCH: usize = 1_000;
/// Most times one row is taken.
pub const MAX_VARIANTS: u32 = 10;
/// Longest list of prompts or CSV accepted, in bytes.
pub const MAX_ROWS_BYTES: usize = 1 << 20;
/// Batches the list keeps (the oldest go first).
pub const MAX_BATCHES: usize = 100;

/// How a batch's rows are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RowsFormat {
    /// One prompt a line (blank lines skipped).
    #[default]
    Prompts,
    /// A header of field names (`prompt`, `aspectRatio`…), then one row a task.
    Csv,
}

impl std::str::FromStr for RowsFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "prompts" | "lines" | "" => Ok(RowsFormat::Prompts),
            "csv" => Ok(RowsFormat::Csv),
            other => Err(format!("rows format {other:?} is not one of prompts, csv")),
        }
    }
}

/// Checks a batch's name.
pub fn check_name(name: &str) -> Result<(), String> {
    if valid_name(name) { Ok(()) } else { Err(format!("a batch's name must be {NAME_RULE}")) }
}

/// The inputs of a batch's tasks, in order: `base` (the composer's other fields) with each
/// row's fields over it, each row `variants` times. A CSV cell is a number or `true`/`false`
/// when it reads as one, else text; an empty cell leaves `base`'s value. An error names the
/// line to fix.
pub fn inputs(base: &Map<String, Value>, format: RowsFormat, rows: &str, variants: u32) -> Result<Vec<Value>, String> {
    if rows.len() > MAX_ROWS_BYTES {
        return Err(format!("the rows are {} bytes; the most a batch takes is {MAX_ROWS_BYTES}", rows.len()));
    }
    if !(1..=MAX_VARIANTS).contains(&variants) {
        return Err(format!("variants must be 1–{MAX_VARIANTS}"));
    }
    let fields: Vec<Map<String, Value>> = match format {
        RowsFormat::Prompts => rows
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| Map::from_iter([("prompt".to_string(), Value::String(l.to_string()))]))
            .collect(),
        RowsFormat::Csv => csv_rows(rows)?,
    };
    if fields.is_empty() {
        return Err("the batch has no rows: give one prompt a line, or a CSV with a header and a row a task".into());
    }
    let n = fields.len() * variants as usize;
    if n > MAX_BATCH {
        return Err(format!("{} rows × {variants} variants is {n} tasks; the most one batch submits is {MAX_BATCH}", fields.len()));
    }
    let mut out = Vec::with_capacity(n);
    for row in fields {
        let mut input = base.clone();
        input.extend(row);
        for _ in 0..variants {
            out.push(Value::Object(input.clone()));
        }
    }
    Ok(out)
}

fn csv_rows(text: &str) -> Result<Vec<Map<String, Value>>, String> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(false).from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().map_err(|e| format!("the CSV's header cannot be read: {e}"))?.iter().map(str::to_string).collect();
    if header.iter().any(|h| h.is_empty() || h.len() > 64 || !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
        return Err("the CSV's first line must name the model's fields (letters, digits and '_'), e.g. prompt,aspectRatio".into());
    }
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let line = i + 2;
        let row = row.map_err(|e| format!("CSV line {line}: {e}"))?;
        let mut fields = Map::new();
        for (name, cell) in header.iter().zip(row.iter()) {
            if !cell.is_empty() {
                fields.insert(name.clone(), cell_value(cell));
            }
        }
        if fields.is_empty() {
            continue;
        }
        if out.len() >= MAX_BATCH {
            return Err(format!("the CSV has more than {MAX_BATCH} rows"));
        }
        out.push(fields);
    }
    Ok(out)
}

/// A CSV cell as JSON: a number or a boolean when it reads as one, else text.
fn cell_value(cell: &str) -> Value {
    match cell {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => match cell.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => match cell.parse::<f64>() {
                Ok(f) if f.is_finite() && cell.contains('.') => Value::from(f),
                _ => Value::String(cell.to_string()),
            },
        },
    }
}

/// Where a batch stands as a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Its tasks are being written, held back until all are (see `lifecycle::batch`).
    Admitting,
    /// Every task was admitted: they are queued like any other.
    Admitted,
    /// A cost rule, the queue quota or a row refused it; nothing of it was sent.
    Refused,
    /// A relay client's: tasks join it one by one, each admitted on its own.
    Open,
}

/// A batch as the list keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub name: String,
    pub project: String,
    /// Who submitted it (a person, or `key:<id>` for a relay key).
    pub owner: String,
    pub model: String,
    pub created_ms: u64,
    /// Tasks it was submitted with (0 for an open one).
    pub tasks: u32,
    /// Their estimate, all together.
    pub estimate: Credits,
    pub state: BatchState,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// The batches, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BatchList {
    pub batches: Vec<Batch>,
}

impl BatchList {
    pub fn get(&self, name: &str) -> Option<&Batch> {
        self.batches.iter().find(|b| b.name == name)
    }
}

/// The list of batches, newest first.
pub async fn list(store: &dyn Store) -> StoreResult<BatchList> {
    read_doc(store, LIST_KEY).await
}

/// Adds `b` to the list (the oldest beyond [`MAX_BATCHES`] leave it; their tasks keep their
/// batch). `Ok(false)` if a batch of that name is already on it.
pub async fn add(store: &dyn Store, b: Batch) -> StoreResult<bool> {
    edit_doc(store, LIST_KEY, |l: &mut BatchList| {
        if l.get(&b.name).is_some() {
            return Ok(false);
        }
        l.batches.insert(0, b);
        l.batches.truncate(MAX_BATCHES);
        Ok::<_, crate::StoreError>(true)
    })
    .await
}

/// Changes batch `name` on the list with `edit` (which says whether it changed anything);
/// `Ok(false)` if it is not listed or `edit` left it as it was.
pub async fn change(store: &dyn Store, name: &str, edit: impl FnOnce(&mut Batch) -> bool) -> StoreResult<bool> {
    edit_doc(store, LIST_KEY, |l: &mut BatchList| Ok::<_, crate::StoreError>(l.batches.iter_mut().find(|b| b.name == name).is_some_and(edit)))
    .await
}

/// A batch with its tasks counted by state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub batch: Batch,
    /// Its tasks now (relay tasks join an open batch over time).
    pub total: u64,
    pub by_state: Vec<(TaskState, u64)>,
}

impl Progress {
    pub fn count(&self, s: TaskState) -> u64 {
        self.by_state.iter().find(|(st, _)| *st == s).map_or(0, |(_, n)| *n)
    }
    /// Ended tasks.
    pub fn ended(&self) -> u64 {
        self.by_state.iter().filter(|(s, _)| s.is_terminal()).map(|(_, n)| n).sum()
    }
    /// "312/500 done · 4 failed".
    pub fn line(&self) -> String {
        let failed = self.count(TaskState::Fail) + self.count(TaskState::Expired);
        let mut line = format!("{}/{} done", self.count(TaskState::Success), self.total);
        if failed > 0 {
            line.push_str(&format!(" · {failed} failed"));
        }
        let waiting = self.total - self.ended();
        if waiting > 0 {
            line.push_str(&format!(" · {waiting} to go"));
        }
        line
    }
}

/// Progress of `b`, counted from the indexes of its tasks by state.
pub async fn progress(store: &dyn Store, b: Batch) -> StoreResult<Progress> {
    let q = crate::tasks::task::TaskQuery { batch: Some(b.name.clone()), ..Default::default() };
    let counts = crate::tasks::facets::count(store, &q).await?.unwrap_or_default();
    Ok(Progress { batch: b, total: counts.total(), by_state: counts.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_and_csv_become_inputs_times_variants() -> Result<(), String> {
        let base = Map::from_iter([("aspectRatio".to_string(), Value::from("16:9"))]);
        let got = inputs(&base, RowsFormat::Prompts, "a kite\n\n  a boat \n", 2)?;
        assert_eq!(got.len(), 4);
        assert_eq!(got[2]["prompt"], "a boat");
        assert_eq!(got[2]["aspectRatio"], "16:9");
        let csv = "prompt,aspectRatio,seed\n\"a kite, red\",9:16,42\nplain,,\n";
        let got = inputs(&base, RowsFormat::Csv, csv, 1)?;
        assert_eq!(got[0]["prompt"], "a kite, red");
        assert_eq!(got[0]["aspectRatio"], "9:16");
        assert_eq!(got[0]["seed"], 42);
        assert_eq!(got[1]["aspectRatio"], "16:9", "an empty cell leaves the base value");
        Ok(())
    }

    #[test]
    fn bad_rows_say_what_to_fix() {
        let base = Map::new();
        assert!(inputs(&base, RowsFormat::Prompts, "\n \n", 1).unwrap_err().contains("no rows"));
        assert!(inputs(&base, RowsFormat::Prompts, "a", 0).unwrap_err().contains("variants"));
        assert!(inputs(&base, RowsFormat::Csv, "prompt,x y\na,b\n", 1).unwrap_err().contains("first line"));
        assert!(inputs(&base, RowsFormat::Csv, "prompt,seed\na,1,extra\n", 1).unwrap_err().contains("line 2"));
        let many = "p\n".repeat(501);
        assert!(inputs(&base, RowsFormat::Prompts, &many, 2).unwrap_err().contains("1002 tasks"));
    }
}
