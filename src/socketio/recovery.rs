//! Connection state recovery: what a Socket.IO session needs to be resumed
//! on any replica (its ids, name and rooms with the position each was
//! joined at), saved at each join and leave and at close (not at connect)
//! so that a replica killed without closing its sockets loses nothing. In
//! Redis when the replicas share one, in memory when standalone; either
//! way each session expires after the recovery window without a save or a
//! touch.

use async_trait::async_trait;
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A session as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// The Socket.IO id.
    pub sid: String,
    /// The member's user when a token set it (else it is the Socket.IO id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Each joined room and the log position it was joined at.
    pub rooms: Vec<(String, u64)>,
}

#[derive(Debug, thiserror::Error)]
#[error("session store unavailable: {0}")]
pub struct StoreError(String);

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Saves the session under its private id for `window`.
    async fn save(&self, pid: &str, session: &Saved, window: Duration) -> Result<(), StoreError>;
    /// Restarts the session's window without rewriting it.
    async fn touch(&self, pid: &str, window: Duration);
    async fn load(&self, pid: &str) -> Result<Option<Saved>, StoreError>;
    /// Drops the session: the client said goodbye.
    async fn forget(&self, pid: &str);
}

/// Sessions kept in memory at most; beyond, the oldest are dropped.
const MAX_MEMORY_SESSIONS: usize = 200_000;

/// Sessions as their JSON, as in Redis: one allocation each instead of one
/// per field, since a standalone replica keeps one per connected client.
#[derive(Default)]
pub struct MemoryStore {
    /// A std mutex: map updates only, never held across an await.
    sessions: Mutex<Sessions>,
}

/// Private id to the session's JSON and when it expires.
type Sessions = HashMap<Box<str>, (Box<[u8]>, Instant)>;

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().expect("session store lock poisoned")
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn save(&self, pid: &str, session: &Saved, window: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut sessions = self.lock();
        if sessions.len() >= MAX_MEMORY_SESSIONS {
            sessions.retain(|_, (_, until)| *until > now);
        }
        let json = serde_json::to_vec(session).expect("sessions always serialise");
        sessions.insert(pid.into(), (json.into_boxed_slice(), now + window));
        Ok(())
    }

    async fn touch(&self, pid: &str, window: Duration) {
        if let Some((_, until)) = self.lock().get_mut(pid) {
            *until = Instant::now() + window;
        }
    }

    async fn load(&self, pid: &str) -> Result<Option<Saved>, StoreError> {
        let mut sessions = self.lock();
        match sessions.get(pid) {
            Some((saved, until)) if *until > Instant::now() => {
                Ok(serde_json::from_slice(saved).ok())
            }
            Some(_) => {
                sessions.remove(pid);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn forget(&self, pid: &str) {
        self.lock().remove(pid);
    }
}

pub struct RedisStore {
    client: Client,
}

fn key(pid: &str) -> String {
    format!("rtchat:sio:{pid}")
}

fn unavailable(err: Error) -> StoreError {
    StoreError(err.to_string())
}

impl RedisStore {
    /// On the door's Redis client, shared with the relay.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn save(&self, pid: &str, session: &Saved, window: Duration) -> Result<(), StoreError> {
        let value = serde_json::to_string(session).expect("sessions always serialise");
        let ttl = Expiration::PX(window.as_millis() as i64);
        self.client
            .set::<(), _, _>(key(pid), value, Some(ttl), None, false)
            .await
            .map_err(unavailable)
    }

    async fn touch(&self, pid: &str, window: Duration) {
        let result: Result<(), Error> = self
            .client
            .pexpire(key(pid), window.as_millis() as i64, None)
            .await;
        if let Err(err) = result {
            tracing::debug!(%err, "could not extend a recoverable session");
        }
    }

    async fn load(&self, pid: &str) -> Result<Option<Saved>, StoreError> {
        let value: Option<String> = self.client.get(key(pid)).await.map_err(unavailable)?;
        Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
    }

    async fn forget(&self, pid: &str) {
        let result: Result<(), Error> = self.client.del(key(pid)).await;
        if let Err(err) = result {
            tracing::debug!(%err, "could not drop a finished session");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_sessions_expire_after_the_window() {
        let store = MemoryStore::default();
        let saved = Saved {
            sid: "s".into(),
            user: None,
            name: None,
            rooms: vec![("g".into(), 5)],
        };
        store
            .save("p", &saved, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(store.load("p").await.unwrap(), Some(saved.clone()));
        store.save("q", &saved, Duration::ZERO).await.unwrap();
        assert_eq!(store.load("q").await.unwrap(), None);
        assert_eq!(store.load("unknown").await.unwrap(), None);
    }
}
