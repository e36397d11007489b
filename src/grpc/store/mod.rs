//! Where users live: in memory for a standalone server, in Redis when
//! replicas must agree. Both hand out ids atomically, keep emails unique
//! (case-insensitively) and start a new, empty store with Alice and Bob.

pub(crate) mod memory;
pub(crate) mod redis;

use async_trait::async_trait;

/// Users a new, empty store starts with.
pub const SEED: [(&str, &str); 2] = [("Alice", "alice@example.com"), ("Bob", "bob@example.com")];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i32,
    pub name: String,
    pub email: String,
    pub created_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("User not found")]
    NotFound,
    #[error("a user with email {0:?} already exists")]
    EmailTaken(String),
    #[error("user store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    async fn get(&self, id: i32) -> Result<User, StoreError>;
    /// Up to `limit` users with ids above `after`, in id order: listing
    /// goes page by page so memory does not follow the number of users.
    async fn page(&self, after: i32, limit: usize) -> Result<Vec<User>, StoreError>;
    async fn create(&self, name: &str, email: &str) -> Result<User, StoreError>;
    /// `None` leaves a field as it is.
    async fn update(
        &self,
        id: i32,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<User, StoreError>;
    /// Returns the user as it was.
    async fn delete(&self, id: i32) -> Result<User, StoreError>;
    fn is_ready(&self) -> bool;
}

/// Now, as stored in `created_at`.
pub fn timestamp() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
