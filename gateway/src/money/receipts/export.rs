//! A receipt as CSV: one row per line, formula cells defused.

use super::{Line, Receipt};

/// The header row of a receipt's CSV.
pub const CSV_HEADER: &str = "task_id,kie_task_id,project,model,owner,state,estimated_credits,credits,cost_usd,exports,created_utc,finished_utc,inputs\r\n";

/// The receipt as CSV: one row per line, times in UTC, formula cells defused.
pub fn csv(r: &Receipt) -> String {
    format!("{CSV_HEADER}{}", csv_rows(&r.lines))
}

/// CSV rows of `lines` (no header), as [`csv`] writes them.
pub fn csv_rows(lines: &[Line]) -> String {
    let mut out = String::new();
    for l in lines {
        let row = [
            l.task_id.clone(),
            l.kie_task_id.clone().unwrap_or_default(),
            l.project.clone(),
            l.model.clone(),
            l.owner.clone(),
            l.state.clone(),
            l.estimated_credits.clone(),
            l.credits.clone(),
            format!("{:.4}", l.cost_usd),
            l.exports.join(" "),
            crate::team::audit::utc(l.created_ms),
            l.finished_ms.map(crate::team::audit::utc).unwrap_or_default(),
            l.inputs.join(" "),
        ];
        out.push_str(&row.iter().map(|f| crate::team::audit::field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}
