//! A client connected to the main namespace: its hub session and the ids
//! recovery finds it by, saved at each join and leave and at close (not at
//! connect) so that any replica can resume it.

use super::recovery::Saved;
use super::state::SioState;
use crate::hub::{Outbound, Session};

/// A client connected to the main namespace.
pub(super) struct Connected {
    pub session: Session,
    pub queue: flume::Receiver<Outbound>,
    /// The private id recovery finds the session by; `None` with recovery
    /// off. A boxed str: one word less than a `String` keeps this struct in
    /// the allocator's 160-byte class, 32 bytes less per socket.
    pub pid: Option<Box<str>>,
    /// The Socket.IO id when a token set the user; `None`: it is the user.
    pub sid: Option<Box<str>>,
}

impl Connected {
    pub fn sid(&self) -> &str {
        self.sid.as_deref().unwrap_or(self.session.user())
    }
}

/// Saves a session for recovery within the window; nothing with recovery
/// off (a session has a private id only with it on).
pub(super) async fn save(state: &SioState, socket: &Connected) {
    let (Some(pid), Some(window)) = (&socket.pid, state.settings.recovery_window) else {
        return;
    };
    let saved = Saved {
        sid: socket.sid().to_owned(),
        user: socket
            .sid
            .is_some()
            .then(|| socket.session.user().to_owned()),
        name: socket.session.name().map(|n| n.as_str().to_owned()),
        rooms: socket.session.positions(),
    };
    if let Err(err) = state.store.save(pid, &saved, window).await {
        tracing::warn!(%err, "could not save the session for recovery");
    }
}

/// Restarts a live session's window, when recovery is on.
pub(super) async fn touch(state: &SioState, socket: &Connected) {
    if let (Some(pid), Some(window)) = (&socket.pid, state.settings.recovery_window) {
        state.store.touch(pid, window).await;
    }
}
