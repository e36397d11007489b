//! HTTP long-polling: a session's packets wait in its outbox until a GET
//! takes them all; a POST hands the client's packets to the session's task.
//! The official clients start here and upgrade to WebSocket.
//!
//! Polling needs every request of a session to reach the replica that
//! holds it (the session lives in this registry); WebSocket does not.

use axum::extract::ws::WebSocket;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Packets a POST may carry, beyond which it is refused.
const MAX_PACKETS_PER_POST: usize = 256;

/// A WebSocket taking over a polling session.
pub enum Upgrade {
    /// The probe was answered: end the pending poll so the client can
    /// finish the upgrade.
    Probed,
    /// The client sent `upgrade`: carry on over this socket.
    Done(Box<WebSocket>),
}

/// Open polling sessions of this replica, by Engine.IO id.
#[derive(Default)]
pub struct Registry {
    /// A std mutex: lookups and inserts only, never held across an await.
    sessions: Mutex<HashMap<String, Arc<Polling>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Polling>>> {
        self.sessions
            .lock()
            .expect("polling registry lock poisoned")
    }

    pub fn get(&self, sid: &str) -> Option<Arc<Polling>> {
        self.lock().get(sid).cloned()
    }

    pub fn remove(&self, sid: &str) {
        self.lock().remove(sid);
    }

    pub fn insert(&self, polling: Arc<Polling>) {
        self.lock().insert(polling.sid.clone(), polling);
    }
}

/// One polling session's side of the transport, shared by its task and
/// the requests that carry its packets.
pub struct Polling {
    /// The session's Engine.IO id.
    pub sid: String,
    /// Server packets not yet taken by a GET. A std mutex, never awaited.
    outbox: Mutex<VecDeque<String>>,
    pub(super) ready: Notify,
    /// The client's packets, for the session's task.
    pub(super) inbound: flume::Sender<String>,
    /// A WebSocket probing or completing the upgrade, for the task.
    pub upgrade: flume::Sender<Upgrade>,
    /// Set while a GET waits: a second one at once is a protocol error.
    pub(super) polling: std::sync::atomic::AtomicBool,
    /// Cancelled when the session ends or moved to WebSocket; a waiting GET
    /// then answers at once.
    pub closed: CancellationToken,
}

impl Polling {
    /// A new session's side, with the receiving ends its task reads: the
    /// client's packets and the WebSocket taking over.
    pub fn open(sid: String) -> (Arc<Self>, flume::Receiver<String>, flume::Receiver<Upgrade>) {
        let (inbound, inbound_rx) = flume::bounded(MAX_PACKETS_PER_POST);
        let (upgrade, upgrade_rx) = flume::bounded(1);
        let polling = Arc::new(Polling {
            sid,
            outbox: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            inbound,
            upgrade,
            polling: Default::default(),
            closed: CancellationToken::new(),
        });
        (polling, inbound_rx, upgrade_rx)
    }

    /// Queues one packet for the next GET; false when the client has let
    /// more than `max` pile up (it stopped polling).
    pub fn push(&self, packet: String, max: usize) -> bool {
        let mut outbox = self.outbox.lock().expect("outbox lock poisoned");
        if outbox.len() >= max {
            return false;
        }
        outbox.push_back(packet);
        drop(outbox);
        self.ready.notify_one();
        true
    }

    /// Everything queued, oldest first.
    pub fn take(&self) -> Vec<String> {
        self.outbox
            .lock()
            .expect("outbox lock poisoned")
            .drain(..)
            .collect()
    }
}
