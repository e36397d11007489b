//! The Socket.IO door's state, one per replica: the doors' shared state,
//! its polling sessions, the recovery store and the relay to other
//! replicas.

use super::polling::Registry;
use super::recovery::{MemoryStore, RedisStore, SessionStore};
use super::relay::Relay;
use crate::door::DoorState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What the door needs besides the hub and the native limits.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a disconnected session can be recovered; `None`: recovery
    /// off (no offsets on events, for clients whose handlers cannot take
    /// the extra argument).
    pub recovery_window: Option<Duration>,
    /// `host:port` other replicas reach this one at; derived when `None`.
    pub advertise: Option<String>,
}

/// What the Socket.IO door's handlers and sessions may touch: the doors'
/// shared state and its own. Cheap to clone (one pointer, which every
/// session holds).
#[derive(Clone)]
pub struct SioState(Arc<SioShared>);

pub struct SioShared {
    /// What every door has: the hub, limits, admission, shutdown.
    pub(crate) door: DoorState,
    pub(crate) settings: Settings,
    pub(crate) polling: Registry,
    pub(crate) store: Arc<dyn SessionStore>,
    /// With Redis: forwards polling requests to the replica holding them.
    pub(crate) relay: Option<Relay>,
}

impl std::ops::Deref for SioState {
    type Target = SioShared;
    fn deref(&self) -> &SioShared {
        &self.0
    }
}

impl SioState {
    /// `listen`: where this replica accepts connections.
    pub(crate) async fn new(
        door: DoorState,
        settings: Settings,
        redis: Option<&crate::redis::RedisSettings>,
        listen: SocketAddr,
    ) -> anyhow::Result<Self> {
        let ping_interval = door.limits.ping_interval;
        let (store, relay): (Arc<dyn SessionStore>, _) = match redis {
            Some(redis) => {
                let advertised = match &settings.advertise {
                    Some(addr) => addr.clone(),
                    None => super::relay::advertised_address(listen, redis),
                };
                tracing::debug!(%advertised, "polling sessions are relayed to this address");
                // One client for both: a Redis client costs a connection,
                // a task and its buffers on every replica.
                let client = crate::redis::builder(redis)?.build()?;
                crate::redis::connect(&[&client]).await;
                (
                    Arc::new(RedisStore::new(client.clone())),
                    Some(Relay::new(client, advertised, ping_interval)),
                )
            }
            None => (Arc::new(MemoryStore::default()), None),
        };
        Ok(Self(Arc::new(SioShared {
            door,
            settings,
            polling: Registry::default(),
            store,
            relay,
        })))
    }
}
