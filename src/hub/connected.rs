//! Who is connected to this replica, by user, and what the commands of
//! the control topic do to them: a server API disconnect reaches the
//! user's connections wherever they are.

use super::backend::Control;
use super::mailbox::{Mailbox, Outbound, try_queue};
use std::collections::HashMap;
use std::sync::Mutex;

/// User to the ids and mailboxes of its sessions here.
type ByUser = HashMap<Box<str>, Vec<(u64, Mailbox)>>;

#[derive(Default)]
pub struct Connected {
    /// A std mutex: held for a map update or one pass of `try_send`s.
    users: Mutex<ByUser>,
}

impl Connected {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByUser> {
        self.users.lock().expect("connected lock poisoned")
    }

    pub fn add(&self, user: &str, session: u64, mailbox: Mailbox) {
        self.lock()
            .entry(user.into())
            .or_default()
            .push((session, mailbox));
    }

    /// Forgets a session; a second call for the same one does nothing.
    pub fn remove(&self, user: &str, session: u64) {
        let mut users = self.lock();
        if let Some(sessions) = users.get_mut(user) {
            sessions.retain(|(id, _)| *id != session);
            if sessions.is_empty() {
                users.remove(user);
            }
        }
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
            Err(err) => tracing::warn!(%err, "ignoring an unknown control command"),
        }
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
