//! Inputs from the Library: a task's URL field may name an asset the team already has, as
//! `control-room://library/<task>/<n>` or as this console's own Library link (signed or not,
//! absolute from `PUBLIC_URL` or relative). KIE cannot and should not reach the console, so
//! such a link is never sent as it is:
//!
//! - at submit, [`recognise`] rewrites each one to its reference form and lists it
//!   ([`LibraryInput`], kept on the task: the story and the receipts say what a result was
//!   made from); the lifecycle then checks that the asset exists and is the caller's to use;
//! - at send, the dispatcher ([`crate::tasks::lifecycle`]) puts in a URL KIE can fetch: the
//!   source task's own KIE result URL while it surely lives ([`KIE_URL_TRUSTED`]), else an
//!   upload of the Library's copy through KIE's upload API, reused while it surely lives
//!   ([`UPLOAD_REUSED`]) and uploaded again after.
//!
//! A signed link is a capability: it admits its asset whatever the caller's projects, as it
//! does in a browser. A reference or an unsigned link admits an asset of a project the
//! caller reaches.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

use super::links::LinkSigner;

/// The reference form of a Library input.
pub const SCHEME: &str = "control-room://library/";
/// Most Library inputs one task may name.
pub const MAX_INPUTS: usize = 16;
/// How long after its task ended KIE's own result URL is used as an input. KIE keeps
/// results 14 days at most, and one copy of its spec says URLs "typically expire after 24
/// hours": half of that, to be sure.
pub const KIE_URL_TRUSTED: Duration = Duration::from_secs(12 * 3600);
/// How long an upload to KIE is reused. KIE deletes uploads after 24 hours to 3 days (its
/// pages disagree): well inside the shortest.
pub const UPLOAD_REUSED: Duration = Duration::from_secs(20 * 3600);

/// One URL field of a task's input that names a Library asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryInput {
    /// Where in the input: `imageUrl`, or `image_urls[1]` in a list.
    pub field: String,
    /// The task that made the asset, and the asset's index among its results.
    pub task: String,
    pub n: usize,
    /// Given as a signed link that was valid when submitted (a capability).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signed: bool,
}

impl LibraryInput {
    /// Its reference form, as the task's input keeps it.
    pub fn reference(&self) -> String {
        reference(&self.task, self.n)
    }
}

/// `control-room://library/<task>/<n>`.
pub fn reference(task: &str, n: usize) -> String {
    format!("{SCHEME}{task}/{n}")
}

/// What a Library link or reference names, or `None` if `s` is neither.
struct Named {
    task: String,
    n: usize,
    signed: bool,
}

/// A task id as the Library names it: letters, digits, `_` and `-`, at most 64.
fn task_id(s: &str) -> Option<&str> {
    (!s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')).then_some(s)
}

/// `<task>/<n>` → its parts.
fn task_and_index(s: &str) -> Option<(String, usize)> {
    let (task, n) = s.split_once('/')?;
    let n: usize = n.parse().ok().filter(|n| *n < 1000)?;
    Some((task_id(task)?.to_string(), n))
}

/// Reads `s` as a Library reference or link. `Err` when it is plainly meant as one but is
/// malformed (so the caller hears why rather than KIE being sent it).
fn named(s: &str, signer: Option<&LinkSigner>, now_s: u64) -> Result<Option<Named>, String> {
    let s = s.trim();
    // Text with spaces in it (a prompt that mentions a reference) is no URL.
    if s.contains(char::is_whitespace) {
        return Ok(None);
    }
    if let Some(rest) = s.strip_prefix(SCHEME) {
        let (task, n) = task_and_index(rest).ok_or_else(|| format!("{s:?} is not a Library reference: write {SCHEME}<task>/<n>"))?;
        return Ok(Some(Named { task, n, signed: false }));
    }
    let base = signer.map(LinkSigner::base).unwrap_or_default();
    let (path, query) = if let Some(rel) = s.strip_prefix("/library/") {
        let (p, q) = rel.split_once('?').unwrap_or((rel, ""));
        (p.to_string(), q.to_string())
    } else {
        let Ok(url) = url::Url::parse(s) else { return Ok(None) };
        let ours = !base.is_empty() && url::Url::parse(base).is_ok_and(|b| b.origin() == url.origin());
        let Some(rel) = url.path().strip_prefix("/library/").filter(|_| ours) else { return Ok(None) };
        (rel.to_string(), url.query().unwrap_or_default().to_string())
    };
    let (task, n) = task_and_index(&path).ok_or_else(|| format!("{s:?} is not a Library link: it should read /library/<task>/<n>"))?;
    let q: std::collections::HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let signed = match (signer, q.get("exp").and_then(|e| e.parse::<u64>().ok()), q.get("sig")) {
        (Some(signer), Some(exp), Some(sig)) => signer.verify(&task, n, exp, sig, now_s).is_ok(),
        _ => false,
    };
    Ok(Some(Named { task, n, signed }))
}

/// Rewrites every Library link or reference among `input`'s URL fields (a string, or a list
/// of strings) to its reference form, and lists them. `Err` names the field and what to fix.
pub fn recognise(input: &mut Map<String, Value>, signer: Option<&LinkSigner>, now_s: u64) -> Result<Vec<LibraryInput>, String> {
    let mut found = Vec::new();
    let mut one = |field: String, v: &mut Value| -> Result<(), String> {
        let Some(s) = v.as_str() else { return Ok(()) };
        let Some(named) = named(s, signer, now_s).map_err(|e| format!("input.{field}: {e}"))? else { return Ok(()) };
        if found.len() == MAX_INPUTS {
            return Err(format!("at most {MAX_INPUTS} inputs may come from the Library"));
        }
        *v = Value::String(reference(&named.task, named.n));
        found.push(LibraryInput { field, task: named.task, n: named.n, signed: named.signed });
        Ok(())
    };
    for (name, v) in input.iter_mut() {
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    one(format!("{name}[{i}]"), item)?;
                }
            }
            other => one(name.clone(), other)?,
        }
    }
    Ok(found)
}

/// Puts `url` at `field` (as [`LibraryInput::field`] names it) in `input`.
pub fn put(input: &mut Value, field: &str, url: &str) {
    let (name, index) = match field.strip_suffix(']').and_then(|f| f.rsplit_once('[')) {
        Some((name, i)) => (name, i.parse::<usize>().ok()),
        None => (field, None),
    };
    let Some(slot) = input.get_mut(name) else { return };
    let slot = match index {
        Some(i) => match slot.get_mut(i) {
            Some(s) => s,
            None => return,
        },
        None => slot,
    };
    *slot = Value::String(url.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_and_this_consoles_links_are_recognised_and_nothing_else() {
        let signer = LinkSigner::with_key(b"k".to_vec(), Some("https://console.test"), Duration::from_secs(3600));
        let now = 1_800_000_000;
        let signed = signer.link("cr_a", 1, now);
        let mut input = json!({
            "prompt": "control-room://library/cr_z/0 in a prompt is left alone",
            "image_urls": ["https://tempfile.aiquickdraw.com/x.png", signed, "/library/cr_b/0"],
            "imageUrl": "control-room://library/cr_c/2",
            "tailUrl": "https://elsewhere.test/library/cr_d/0",
        });
        let mut found = recognise(input.as_object_mut().unwrap(), Some(&signer), now).unwrap();
        found.sort_by(|a, b| a.field.cmp(&b.field));
        assert_eq!(
            found,
            vec![
                LibraryInput { field: "imageUrl".into(), task: "cr_c".into(), n: 2, signed: false },
                LibraryInput { field: "image_urls[1]".into(), task: "cr_a".into(), n: 1, signed: true },
                LibraryInput { field: "image_urls[2]".into(), task: "cr_b".into(), n: 0, signed: false },
            ]
        );
        assert_eq!(input["image_urls"], json!(["https://tempfile.aiquickdraw.com/x.png", "control-room://library/cr_a/1", "control-room://library/cr_b/0"]));
        assert_eq!(input["tailUrl"], "https://elsewhere.test/library/cr_d/0", "another host's /library/ is not ours");
        assert!(input["prompt"].as_str().unwrap().starts_with("control-room://library/cr_z/0 in"), "a prompt is not a URL field");
        // An expired or altered signature is a plain link: the caller's projects decide.
        let stale = recognise(json!({"u": signer.link("cr_a", 1, now - 10 * 3600)}).as_object_mut().unwrap(), Some(&signer), now).unwrap();
        assert!(!stale[0].signed);
        let forged = recognise(json!({"u": signed.replace("cr_a/1", "cr_a/2")}).as_object_mut().unwrap(), Some(&signer), now).unwrap();
        assert_eq!((forged[0].n, forged[0].signed), (2, false));
        let mut placed = json!({"image_urls": ["a", "b"], "imageUrl": "c"});
        put(&mut placed, "image_urls[1]", "https://kie.test/up.png");
        put(&mut placed, "imageUrl", "https://kie.test/c.png");
        assert_eq!(placed, json!({"image_urls": ["a", "https://kie.test/up.png"], "imageUrl": "https://kie.test/c.png"}));
    }

    #[test]
    fn a_malformed_reference_is_refused_with_the_form_to_write() {
        for bad in ["control-room://library/cr_a", "control-room://library/../x/0", "control-room://library/cr_a/-1", "/library/cr_a/x"] {
            let e = recognise(json!({"imageUrl": bad}).as_object_mut().unwrap(), None, 0).unwrap_err();
            assert!(e.starts_with("input.imageUrl: ") && e.contains("<task>/<n>"), "{bad}: {e}");
        }
        let many: Vec<String> = (0..=MAX_INPUTS).map(|i| reference("cr_a", i)).collect();
        let e = recognise(json!({"image_urls": many}).as_object_mut().unwrap(), None, 0).unwrap_err();
        assert!(e.contains("at most 16"), "{e}");
    }
}
