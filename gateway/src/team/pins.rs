//! Pinned models: each person's favourites, kept in the shared store so they follow the
//! person across browsers and instances. The composer lists them first.

use crate::store::{Store, StoreError, StoreResult, edit_doc, read_doc};

/// Most models one person may pin.
pub const MAX_PINS: usize = 24;

fn key(user: &str) -> String {
    format!("pins:{user}")
}

/// `user`'s pinned model ids, in the order they were pinned.
pub async fn list(store: &dyn Store, user: &str) -> StoreResult<Vec<String>> {
    read_doc(store, &key(user)).await
}

/// Pins or unpins `model` for `user` (the caller checks the model is in the catalog). Returns
/// the new list.
pub async fn set(store: &dyn Store, user: &str, model: &str, pinned: bool) -> StoreResult<Vec<String>> {
    edit_doc(store, &key(user), |pins: &mut Vec<String>| {
        pins.retain(|m| m != model);
        if pinned {
            if pins.len() >= MAX_PINS {
                return Err(StoreError::Invalid(format!("at most {MAX_PINS} pinned models; unpin one first")));
            }
            pins.push(model.to_string());
        }
        Ok(pins.clone())
    })
    .await
}
