//! `GET /batches/{name}/zip`: a batch's Library copies as one zip (viewer and above), streamed
//! as it is read — one file after another from the Library, never the whole in memory — and
//! stored, not compressed (media is compressed already). Each file is named
//! `<task id>-<n>.<extension>`; `batch.csv` lists every task of the batch with its state, its
//! prompt and its files (a task without a Library copy says why). At most
//! [`gateway::tasks::batch::MAX_BATCH`] tasks are read.

use std::io::Write;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::AppState;
use crate::error::{Refusal, Shape};
use gateway::library::{Found, Library};
use gateway::tasks::batch::{self, MAX_BATCH};
use gateway::tasks::task::TaskQuery;
use gateway::team::accounts::{Actor, Role};
use gateway::{Store, TaskRecord};

/// Bytes gathered before a piece of the zip is sent.
const PIECE: usize = 64 * 1024;
/// Pieces waiting to be sent, at most (a slow reader holds the Library's reads back).
const PIECES_QUEUED: usize = 4;

pub async fn zip(State(state): State<AppState>, Path(name): Path<String>, Extension(actor): Extension<Actor>) -> Result<Response, Refusal> {
    actor.require(Role::Viewer).map_err(|e| Refusal::plain(StatusCode::FORBIDDEN, e.to_string()))?;
    batch::check_name(&name).map_err(|e| Refusal::plain(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let Some(library) = state.library.clone() else { return Err(Refusal::plain(StatusCode::NOT_FOUND, "The Library is off on this console (LIBRARY_URL=off), so there is nothing to download.")) };
    let store = state.lifecycle.store().clone();
    let listed = batch::list(store.as_ref()).await.map_err(|e| Refusal::unavailable(Shape::Plain, "batches: cannot read the list", &e, "The store is unavailable; try again shortly."))?;
    // A batch of a project outside the person's reach is, for them, not there.
    if listed.get(&name).is_none_or(|b| !actor.sees(&b.project)) {
        return Err(Refusal::plain(StatusCode::NOT_FOUND, format!("No batch named {name:?}.")));
    }
    let tasks = batch_tasks(store.as_ref(), &name).await.map_err(|e| Refusal::unavailable(Shape::Plain, "batches: cannot read a batch's tasks", &e, "The store is unavailable; try again shortly."))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(PIECES_QUEUED);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let out = Pieces { tx: tx.clone(), buf: Vec::with_capacity(PIECE) };
        if let Err(e) = write_zip(&handle, &library, &tasks, out) {
            tracing::warn!(error = %e, "a batch's zip stopped part-way");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = tokio_stream_of(rx);
    let disposition = format!("attachment; filename=\"{}.zip\"", name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_' && c != '.', "_"));
    Ok(([(header::CONTENT_TYPE, "application/zip".to_string()), (header::CONTENT_DISPOSITION, disposition)], Body::from_stream(stream)).into_response())
}

fn tokio_stream_of(mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The batch's tasks, oldest first, at most [`MAX_BATCH`].
async fn batch_tasks(store: &dyn Store, name: &str) -> Result<Vec<TaskRecord>, gateway::StoreError> {
    let mut q = TaskQuery { batch: Some(name.to_string()), oldest_first: true, limit: 100, ..Default::default() };
    let mut out = Vec::new();
    loop {
        let page = store.task_list(&q).await?;
        out.extend(page.tasks);
        match page.next {
            Some(next) if out.len() < MAX_BATCH => q.after = Some(next),
            _ => break,
        }
    }
    out.truncate(MAX_BATCH);
    Ok(out)
}

/// The zip's bytes, sent in pieces of [`PIECE`]; fails once the reader has gone.
struct Pieces {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Pieces {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE)));
        self.tx.blocking_send(Ok(piece)).map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the download was closed"))
    }
}

impl Write for Pieces {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A file's extension from where KIE had it (`.png`), else `bin`.
fn extension(source: &str) -> &str {
    let path = source.split(['?', '#']).next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    match last.rsplit_once('.') {
        Some((_, ext)) if (1..=5).contains(&ext.len()) && ext.chars().all(|c| c.is_ascii_alphanumeric()) => ext,
        _ => "bin",
    }
}

fn write_zip(handle: &tokio::runtime::Handle, library: &Library, tasks: &[TaskRecord], out: Pieces) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut zip = zip::ZipWriter::new_stream(out);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true);
    let mut index = csv::Writer::from_writer(Vec::new());
    index.write_record(["task", "state", "model", "prompt", "files"])?;
    for t in tasks {
        let mut files = Vec::new();
        let assets = t.archive.as_ref().map(|a| a.assets.clone()).unwrap_or_default();
        for (n, asset) in assets.into_iter().enumerate().filter(|(_, a)| a.state == gateway::library::asset::AssetState::Archived) {
            let file = format!("{}-{n}.{}", t.id, extension(&asset.source));
            let found = Found { task: t.clone(), index: n, asset };
            let mut body = match handle.block_on(library.read(&found, None)) {
                Ok(body) => body,
                Err(e) => {
                    files.push(format!("{file} (unreadable: {e})"));
                    continue;
                }
            };
            zip.start_file(file.as_str(), options)?;
            while let Some(chunk) = handle.block_on(body.next()) {
                zip.write_all(&chunk?)?;
            }
            files.push(file);
        }
        if files.is_empty() {
            files.push(if t.state.is_terminal() { "no Library copy".into() } else { format!("not ended ({})", t.state) });
        }
        let prompt = t.input.get("prompt").and_then(|p| p.as_str()).unwrap_or_default();
        index.write_record([t.id.as_str(), t.state.as_str(), &t.model, prompt, &files.join(" ")])?;
    }
    zip.start_file("batch.csv", options)?;
    zip.write_all(&index.into_inner().map_err(|e| e.to_string())?)?;
    let mut out = zip.finish()?.into_inner();
    out.flush()?;
    Ok(())
}
