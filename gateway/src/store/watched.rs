//! An instance's cache of store records that every instance drops at once when one changes.
//!
//! A writer changes a record in the store, then [`announce`]s its key on the cache's channel;
//! every instance's [`Watched`] cache forgets that key (or everything, for [`ALL`]) when the
//! message arrives. While an instance is not subscribed (starting, or the store dropped the
//! subscription) it caches nothing and every read goes to the store, so a missed message can
//! never leave a stale value behind. Each entry also lapses after a fixed time, a safety net
//! under the messages rather than the way changes arrive.
//!
//! A read that races a change cannot keep the old value: every message moves a generation, and
//! a value loaded from the store is kept only if no message arrived while it was loading.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::{Store, StoreResult, now_ms};

/// The message that drops every entry.
pub const ALL: &str = "*";

/// Tells every instance's cache on `channel` that `key` ([`ALL`] for every key) changed.
/// Call it after the change is in the store.
pub async fn announce(store: &dyn Store, channel: &str, key: &str) -> StoreResult<()> {
    store.publish(channel, key.as_bytes()).await
}

struct Entries<V> {
    map: HashMap<String, (V, u64)>,
    /// Moves with every message heard (and every loss of the subscription).
    generation: u64,
    /// Whether changes are being heard; nothing is cached while they are not.
    listening: bool,
}

/// Values by key, kept while their instance hears the changes announced on its channel.
pub struct Watched<V> {
    store: Arc<dyn Store>,
    keep_for_ms: u64,
    max_entries: usize,
    entries: Mutex<Entries<V>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<V: Clone + Send + 'static> Watched<V> {
    /// A cache of at most `max_entries` values, each kept at most `keep_for`. It caches
    /// nothing until it [follows](Watched::follow) a channel.
    pub fn new(store: Arc<dyn Store>, keep_for: Duration, max_entries: usize) -> Arc<Self> {
        Arc::new(Watched {
            store,
            keep_for_ms: keep_for.as_millis() as u64,
            max_entries: max_entries.max(1),
            entries: Mutex::new(Entries { map: HashMap::new(), generation: 0, listening: false }),
            task: Mutex::new(None),
        })
    }

    /// Follows the changes announced on `channel` (from within a Tokio runtime); values are
    /// cached once the subscription is up. Following again replaces the earlier listener.
    pub fn follow(self: &Arc<Self>, channel: &'static str) {
        let handle = tokio::spawn(listen(Arc::downgrade(self), channel));
        if let Some(old) = self.task.lock().unwrap_or_else(|e| e.into_inner()).replace(handle) {
            old.abort();
        }
    }

    /// Stops following changes; from now on every read goes to the store.
    pub fn stop(&self) {
        self.set_listening(false);
        if let Some(h) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            h.abort();
        }
    }

    /// [`Watched::stop`], then waits until the listening task is gone (with it, its
    /// subscription and what it holds of the store: the embedded store's file can be opened
    /// again as soon as this returns).
    pub async fn stop_and_wait(&self) {
        self.set_listening(false);
        let handle = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            h.abort();
            let _ = h.await;
        }
    }

    /// Whether changes are being heard (and values cached).
    pub fn listening(&self) -> bool {
        self.lock().listening
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<V>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_listening(&self, on: bool) {
        let mut e = self.lock();
        e.listening = on;
        e.generation += 1;
        if !on {
            e.map.clear();
        }
    }

    fn heard(&self, key: &str) {
        let mut e = self.lock();
        e.generation += 1;
        if key == ALL {
            e.map.clear();
        } else {
            e.map.remove(key);
        }
    }

    /// The value of `key`: the cached one, or what `load` reads from the store. A loaded
    /// value is kept when `keep` says so and nothing changed while it was loading.
    pub async fn get<E, Fut>(&self, key: &str, load: impl FnOnce() -> Fut, keep: impl FnOnce(&V) -> bool) -> Result<Option<V>, E>
    where
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let now = now_ms();
        let generation = {
            let e = self.lock();
            if e.listening
                && let Some((v, at)) = e.map.get(key)
                && now.saturating_sub(*at) < self.keep_for_ms
            {
                return Ok(Some(v.clone()));
            }
            e.generation
        };
        let loaded = load().await?;
        if let Some(v) = &loaded
            && keep(v)
        {
            let mut e = self.lock();
            if e.listening && e.generation == generation {
                if e.map.len() >= self.max_entries && !e.map.contains_key(key) {
                    e.map.clear();
                }
                e.map.insert(key.to_string(), (v.clone(), now));
            }
        }
        Ok(loaded)
    }
}

/// Follows the channel for as long as the cache exists, resubscribing when the store drops it.
async fn listen<V: Clone + Send + 'static>(cache: Weak<Watched<V>>, channel: &'static str) {
    loop {
        let Some(c) = cache.upgrade() else { return };
        let stream = c.store.subscribe(channel).await;
        drop(c);
        match stream {
            Ok(mut stream) => {
                if let Some(c) = cache.upgrade() {
                    c.set_listening(true);
                }
                while let Some(key) = futures::StreamExt::next(&mut stream).await {
                    let Some(c) = cache.upgrade() else { return };
                    c.heard(&String::from_utf8_lossy(&key));
                }
                tracing::warn!(channel, "cache: subscription ended; resubscribing");
            }
            Err(e) => tracing::warn!(channel, error = %e, "cache: cannot subscribe; retrying"),
        }
        // Deaf: cache nothing until the subscription is back.
        if let Some(c) = cache.upgrade() {
            c.set_listening(false);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EmbeddedStore, StoreError};
    use std::sync::atomic::{AtomicU32, Ordering};

    async fn until_listening(c: &Watched<u32>) {
        for _ in 0..200 {
            if c.listening() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the cache never subscribed");
    }

    /// A cache over an embedded store, and a counter of the loads it made.
    fn setup(dir: &tempfile::TempDir) -> (Arc<dyn Store>, Arc<Watched<u32>>) {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        (store.clone(), Watched::new(store, Duration::from_secs(60), 2))
    }

    /// `key` through the cache; a load (counted) gives `value`.
    async fn read(c: &Watched<u32>, key: &str, loads: &AtomicU32, value: u32) -> u32 {
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StoreError>(Some(value))
        };
        c.get(key, load, |_| true).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn nothing_is_cached_until_changes_are_heard_then_a_change_drops_it_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, c) = setup(&dir);
        let loads = AtomicU32::new(0);
        read(&c, "k", &loads, 1).await;
        read(&c, "k", &loads, 1).await;
        assert_eq!(loads.load(Ordering::SeqCst), 2, "not following: every read loads");
        c.follow("changes");
        until_listening(&c).await;
        read(&c, "k", &loads, 1).await;
        assert_eq!(read(&c, "k", &loads, 2).await, 1, "kept");
        assert_eq!(loads.load(Ordering::SeqCst), 3);
        announce(store.as_ref(), "changes", "k").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(read(&c, "k", &loads, 2).await, 2, "dropped by the announcement");
        read(&c, "other", &loads, 7).await;
        announce(store.as_ref(), "changes", ALL).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = loads.load(Ordering::SeqCst);
        read(&c, "k", &loads, 3).await;
        read(&c, "other", &loads, 8).await;
        assert_eq!(loads.load(Ordering::SeqCst), before + 2, "ALL dropped every key");
        c.stop();
        read(&c, "k", &loads, 4).await;
        assert_eq!(read(&c, "k", &loads, 5).await, 5, "stopped: nothing cached");
    }

    #[tokio::test]
    async fn a_value_loaded_while_a_change_arrives_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (store, c) = setup(&dir);
        c.follow("changes");
        until_listening(&c).await;
        // The load reads the old value, then the change is announced before it returns.
        let got = c
            .get(
                "k",
                || async {
                    announce(store.as_ref(), "changes", "k").await.unwrap();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, StoreError>(Some(1))
                },
                |_| true,
            )
            .await
            .unwrap();
        assert_eq!(got, Some(1));
        let loads = AtomicU32::new(0);
        assert_eq!(read(&c, "k", &loads, 2).await, 2, "the racing value was not kept");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // Values `keep` refuses, and misses, are never kept; the size stays bounded.
        assert_eq!(c.get("n", || async { Ok::<_, StoreError>(None) }, |_| true).await.unwrap(), None);
        c.get("r", || async { Ok::<_, StoreError>(Some(9)) }, |_| false).await.unwrap();
        for k in ["a", "b", "c"] {
            read(&c, k, &loads, 0).await;
        }
        assert!(c.lock().map.len() <= 2, "bounded");
        assert!(!c.lock().map.contains_key("r"));
    }
}
