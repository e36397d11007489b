//! Who is connected to this replica, by user, and what the commands of
//! the control topic do here: a server API disconnect reaches the user's
//! connections wherever they are; a drain reaches the replica it names.
//! Shedding (a drain, rebalancing) closes the oldest sessions first: a
//! client that just moved here is not moved again.

use super::Hub;
use super::backend::{CONTROL_TOPIC, Control};
use super::mailbox::{Mailbox, Outbound, try_queue};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// User to the ids and mailboxes of its sessions here.
type ByUser = HashMap<Box<str>, Vec<(u64, Mailbox)>>;

pub struct Connected {
    /// A std mutex: held for a map update or one pass of `try_send`s.
    users: Mutex<ByUser>,
    /// This replica's id, which a drain command names.
    server_id: String,
    /// Cancelled by a drain command naming this replica; the server
    /// watches it.
    drain: CancellationToken,
}

impl Connected {
    pub fn new(server_id: String) -> Self {
        Self {
            users: Mutex::default(),
            server_id,
            drain: CancellationToken::new(),
        }
    }

    /// Cancelled once a drain of this replica is asked for.
    pub fn drain_requested(&self) -> &CancellationToken {
        &self.drain
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ByUser> {
        self.users.lock().expect("connected lock poisoned")
    }

    pub fn add(&self, user: &str, session: u64, mailbox: Mailbox) {
        // Room for one: a user has one session here as a rule, and a
        // first push would make room for four.
        self.lock()
            .entry(user.into())
            .or_insert_with(|| Vec::with_capacity(1))
            .push((session, mailbox));
    }

    /// Forgets a session; a second call for the same one does nothing and
    /// returns false.
    pub fn remove(&self, user: &str, session: u64) -> bool {
        let mut users = self.lock();
        let Some(sessions) = users.get_mut(user) else {
            return false;
        };
        let before = sessions.len();
        sessions.retain(|(id, _)| *id != session);
        let removed = sessions.len() < before;
        if sessions.is_empty() {
            users.remove(user);
        }
        removed
    }

    /// Runs a command that came over the control topic.
    pub fn on_control(&self, payload: &[u8]) {
        match serde_json::from_slice(payload) {
            Ok(Control::Disconnect(user)) => {
                let closed = self.disconnect(&user);
                if closed > 0 {
                    tracing::info!(closed, "disconnected a user's connections on request");
                }
            }
            Ok(Control::Drain(server)) => {
                if server == self.server_id {
                    tracing::info!("drain requested through the server API");
                    self.drain.cancel();
                }
            }
            Err(err) => tracing::warn!(%err, "ignoring an unknown control command"),
        }
    }

    /// Sessions of this replica.
    pub fn count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Tells the `n` oldest sessions to reconnect elsewhere and forgets
    /// them (each is told once); how many were told.
    pub fn shed(&self, n: usize) -> usize {
        let mut users = self.lock();
        let mut oldest: Vec<(u64, &str)> = users
            .iter()
            .flat_map(|(user, sessions)| sessions.iter().map(move |(id, _)| (*id, &**user)))
            .collect();
        if n < oldest.len() {
            oldest.select_nth_unstable(n);
            oldest.truncate(n);
        }
        let chosen: Vec<(u64, Box<str>)> = oldest
            .into_iter()
            .map(|(id, user)| (id, user.into()))
            .collect();
        for (id, user) in &chosen {
            if let Some(sessions) = users.get_mut(user) {
                if let Some(at) = sessions.iter().position(|(s, _)| s == id) {
                    let (_, mailbox) = sessions.swap_remove(at);
                    // A full queue cancels the session as too slow: it
                    // closes, and reconnects, anyway.
                    try_queue(&mailbox, Outbound::Reconnect);
                }
                if sessions.is_empty() {
                    users.remove(user);
                }
            }
        }
        drop(users);
        // When each was sent off, for a drain's or a rebalance's pace:
        // `disconnected` comes later, after the Redis calls of leaving.
        for (session, user) in &chosen {
            tracing::debug!(session, %user, "sent elsewhere");
        }
        chosen.len()
    }

    /// Tells every local connection of `user` to close; how many there were.
    fn disconnect(&self, user: &str) -> usize {
        let users = self.lock();
        let sessions = users.get(user).map_or(&[][..], Vec::as_slice);
        for (_, mailbox) in sessions {
            // A full queue cancels the session as too slow: closed anyway.
            try_queue(mailbox, Outbound::Disconnect);
        }
        sessions.len()
    }
}

/// How often a hub that could not subscribe the control topic tries again.
const CONTROL_RETRY: Duration = Duration::from_secs(1);

/// Listens on the control topic, retrying until the backend answers: only
/// a server with sessions has anything for its commands to act on.
pub(super) fn listen_for_control(hub: &Arc<Hub>) {
    let hub = Arc::downgrade(hub);
    tokio::spawn(async move {
        loop {
            let Some(hub) = hub.upgrade() else { return };
            match hub.log.subscribe(CONTROL_TOPIC).await {
                Ok(()) => return,
                Err(err) => tracing::debug!(%err, "control topic not subscribed yet"),
            }
            drop(hub);
            tokio::time::sleep(CONTROL_RETRY).await;
        }
    });
}
