//! Users in Redis, so every replica behind a balancer agrees. Each write
//! is one Lua script: id allocation, email uniqueness and the indexes
//! change together or not at all, whatever other replicas do meanwhile.
//!
//! Keys: `rtchat:{users}:user:<id>` (hash name/email/created_at),
//! `rtchat:{users}:next_id` (counter), `rtchat:{users}:ids` (sorted set,
//! for listing in id order), `rtchat:{users}:emails` (lowercased email to
//! id). All share the hash tag `{users}`: on Redis Cluster the whole store
//! lives in one slot, so each script stays atomic and ids stay unique and
//! increasing; it is small next to the rooms, which spread over shards.

use super::{SEED, StoreError, User, UserStore, timestamp};
use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;

const NEXT_ID: &str = "rtchat:{users}:next_id";
const IDS: &str = "rtchat:{users}:ids";
const EMAILS: &str = "rtchat:{users}:emails";
/// The hash tag of every key, for `WAIT`.
const TAG: &str = "users";
/// The names before the hash tag, moved by migrate.lua.
const UNTAGGED: [&str; 3] = [
    "rtchat:users:next_id",
    "rtchat:users:ids",
    "rtchat:users:emails",
];

fn user_key(id: i32) -> String {
    format!("rtchat:{{users}}:user:{id}")
}

pub struct RedisStore {
    client: Client,
    settings: crate::redis::RedisSettings,
    seed: Script,
    create: Script,
    update: Script,
    delete: Script,
    page: Script,
}

impl RedisStore {
    pub async fn connect(redis: &crate::redis::RedisSettings) -> anyhow::Result<Self> {
        let client = crate::redis::builder(redis)?.build()?;
        let store = Self {
            client,
            settings: redis.clone(),
            seed: Script::from_lua(include_str!("lua/seed.lua")),
            create: Script::from_lua(include_str!("lua/create.lua")),
            update: Script::from_lua(include_str!("lua/update.lua")),
            delete: Script::from_lua(include_str!("lua/delete.lua")),
            page: Script::from_lua(include_str!("lua/page.lua")),
        };
        let migrate =
            (!redis.is_cluster()).then(|| Script::from_lua(include_str!("lua/migrate.lua")));
        if crate::redis::connect(&[&store.client]).await
            && let Err(err) = prepare(&store.client, migrate.as_ref(), &store.seed).await
        {
            tracing::warn!(%err, "preparing the user store failed; will retry on reconnect");
        }
        // A Redis that comes back empty is a new store: seed it again.
        let mut reconnects = store.client.reconnect_rx();
        let (client, seed) = (store.client.clone(), store.seed.clone());
        tokio::spawn(async move {
            while reconnects.recv().await.is_ok() {
                if let Err(err) = prepare(&client, migrate.as_ref(), &seed).await {
                    tracing::warn!(%err, "preparing the user store after a reconnect failed");
                }
            }
        });
        Ok(store)
    }

    /// After a write: with `--redis-wait-replicas`, its replicas hold it.
    async fn replicated(&self) -> Result<(), StoreError> {
        crate::redis::wait_for_replicas(&self.client, &self.settings, TAG)
            .await
            .map_err(StoreError::Unavailable)
    }
}

/// Moves an untagged store to the tagged names (not on a cluster), then
/// seeds a new one.
async fn prepare(client: &Client, migrate: Option<&Script>, seed: &Script) -> Result<(), Error> {
    if let Some(migrate) = migrate {
        let keys: Vec<&str> = UNTAGGED.into_iter().chain([NEXT_ID, IDS, EMAILS]).collect();
        let moved: i64 = migrate.evalsha_with_reload(client, keys, ()).await?;
        if moved == 1 {
            tracing::info!("moved the user store to its hash-tagged keys");
        }
    }
    run_seed(client, seed).await
}

async fn run_seed(client: &Client, seed: &Script) -> Result<(), Error> {
    let mut args = vec![timestamp()];
    for (name, email) in SEED {
        args.extend([name.to_owned(), email.to_owned()]);
    }
    let seeded: i64 = seed
        .evalsha_with_reload(client, vec![NEXT_ID, IDS, EMAILS], args)
        .await?;
    if seeded == 1 {
        tracing::info!("seeded a new user store");
    }
    Ok(())
}

fn map_err(err: Error, email: Option<&str>) -> StoreError {
    let details = err.details();
    if details.contains("NOT_FOUND") {
        StoreError::NotFound
    } else if details.contains("EMAIL_TAKEN") {
        StoreError::EmailTaken(email.unwrap_or_default().to_owned())
    } else {
        StoreError::Unavailable(err.to_string())
    }
}

fn user_from(id: i32, fields: Vec<Option<String>>) -> Result<User, StoreError> {
    let mut fields = fields.into_iter();
    match (
        fields.next().flatten(),
        fields.next().flatten(),
        fields.next().flatten(),
    ) {
        (Some(name), Some(email), Some(created_at)) => Ok(User {
            id,
            name,
            email,
            created_at,
        }),
        _ => Err(StoreError::NotFound),
    }
}

#[async_trait]
impl UserStore for RedisStore {
    async fn get(&self, id: i32) -> Result<User, StoreError> {
        let fields: Vec<Option<String>> = self
            .client
            .hmget(user_key(id), vec!["name", "email", "created_at"])
            .await
            .map_err(|e| map_err(e, None))?;
        user_from(id, fields)
    }

    async fn page(&self, after: i32, limit: usize) -> Result<Vec<User>, StoreError> {
        let flat: Vec<String> = self
            .page
            .evalsha_with_reload(
                &self.client,
                vec![IDS],
                vec![after.to_string(), limit.to_string()],
            )
            .await
            .map_err(|e| map_err(e, None))?;
        flat.chunks_exact(4)
            .map(|c| {
                let id = c[0]
                    .parse()
                    .map_err(|_| StoreError::Unavailable(format!("bad user id {:?}", c[0])))?;
                Ok(User {
                    id,
                    name: c[1].clone(),
                    email: c[2].clone(),
                    created_at: c[3].clone(),
                })
            })
            .collect()
    }

    async fn create(&self, name: &str, email: &str) -> Result<User, StoreError> {
        let created_at = timestamp();
        let id: i64 = self
            .create
            .evalsha_with_reload(
                &self.client,
                vec![NEXT_ID, IDS, EMAILS],
                vec![name, email, &created_at],
            )
            .await
            .map_err(|e| map_err(e, Some(email)))?;
        let id =
            i32::try_from(id).map_err(|_| StoreError::Unavailable("user ids exhausted".into()))?;
        self.replicated().await?;
        Ok(User {
            id,
            name: name.to_owned(),
            email: email.to_owned(),
            created_at,
        })
    }

    async fn update(
        &self,
        id: i32,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<User, StoreError> {
        let fields: Vec<Option<String>> = self
            .update
            .evalsha_with_reload(
                &self.client,
                vec![EMAILS],
                vec![
                    id.to_string(),
                    name.unwrap_or_default().to_owned(),
                    email.unwrap_or_default().to_owned(),
                ],
            )
            .await
            .map_err(|e| map_err(e, email))?;
        let user = user_from(id, fields)?;
        self.replicated().await?;
        Ok(user)
    }

    async fn delete(&self, id: i32) -> Result<User, StoreError> {
        let fields: Vec<Option<String>> = self
            .delete
            .evalsha_with_reload(&self.client, vec![IDS, EMAILS], vec![id.to_string()])
            .await
            .map_err(|e| map_err(e, None))?;
        let user = user_from(id, fields)?;
        self.replicated().await?;
        Ok(user)
    }

    fn is_ready(&self) -> bool {
        self.client.is_connected()
    }
}
