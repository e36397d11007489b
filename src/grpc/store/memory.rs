//! Users in this process's memory.

use super::{SEED, StoreError, User, UserStore, timestamp};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

pub struct MemoryStore {
    /// A std mutex: every operation is a few map updates, never awaited.
    inner: Mutex<Inner>,
}

struct Inner {
    users: BTreeMap<i32, User>,
    /// Lowercased email to id, for uniqueness.
    emails: HashMap<String, i32>,
    last_id: i32,
}

impl Default for MemoryStore {
    fn default() -> Self {
        let store = Self {
            inner: Mutex::new(Inner {
                users: BTreeMap::new(),
                emails: HashMap::new(),
                last_id: 0,
            }),
        };
        {
            let mut inner = store.inner.lock().expect("fresh lock");
            for (name, email) in SEED {
                inner.insert(name, email).expect("seed users are distinct");
            }
        }
        store
    }
}

impl Inner {
    fn insert(&mut self, name: &str, email: &str) -> Result<User, StoreError> {
        let key = email.to_lowercase();
        if self.emails.contains_key(&key) {
            return Err(StoreError::EmailTaken(email.to_owned()));
        }
        self.last_id = self
            .last_id
            .checked_add(1)
            .ok_or_else(|| StoreError::Unavailable("user ids exhausted".into()))?;
        let user = User {
            id: self.last_id,
            name: name.to_owned(),
            email: email.to_owned(),
            created_at: timestamp(),
        };
        self.emails.insert(key, user.id);
        self.users.insert(user.id, user.clone());
        Ok(user)
    }
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("user store lock poisoned")
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn get(&self, id: i32) -> Result<User, StoreError> {
        self.lock()
            .users
            .get(&id)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    async fn page(&self, after: i32, limit: usize) -> Result<Vec<User>, StoreError> {
        Ok(self
            .lock()
            .users
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(_, u)| u.clone())
            .collect())
    }

    async fn create(&self, name: &str, email: &str) -> Result<User, StoreError> {
        self.lock().insert(name, email)
    }

    async fn update(
        &self,
        id: i32,
        name: Option<&str>,
        email: Option<&str>,
    ) -> Result<User, StoreError> {
        let mut inner = self.lock();
        let current = inner
            .users
            .get(&id)
            .ok_or(StoreError::NotFound)?
            .email
            .to_lowercase();
        if let Some(email) = email {
            let key = email.to_lowercase();
            if key != current {
                if inner.emails.contains_key(&key) {
                    return Err(StoreError::EmailTaken(email.to_owned()));
                }
                inner.emails.remove(&current);
                inner.emails.insert(key, id);
            }
        }
        let user = inner.users.get_mut(&id).expect("checked above");
        if let Some(name) = name {
            user.name = name.to_owned();
        }
        if let Some(email) = email {
            user.email = email.to_owned();
        }
        Ok(user.clone())
    }

    async fn delete(&self, id: i32) -> Result<User, StoreError> {
        let mut inner = self.lock();
        let user = inner.users.remove(&id).ok_or(StoreError::NotFound)?;
        inner.emails.remove(&user.email.to_lowercase());
        Ok(user)
    }

    fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn seeded_unique_and_paged() {
        let store = MemoryStore::default();
        assert_eq!(store.get(1).await.unwrap().name, "Alice");
        assert_eq!(store.get(2).await.unwrap().email, "bob@example.com");
        assert!(matches!(
            store.create("A2", "ALICE@example.com").await,
            Err(StoreError::EmailTaken(_))
        ));
        let carol = store.create("Carol", "carol@example.com").await.unwrap();
        assert_eq!(carol.id, 3);
        assert_eq!(store.page(1, 1).await.unwrap()[0].id, 2);
        assert_eq!(store.page(0, 10).await.unwrap().len(), 3);
        let renamed = store
            .update(3, Some("Caro"), Some("caro@example.com"))
            .await
            .unwrap();
        assert_eq!(
            (renamed.name.as_str(), renamed.created_at),
            ("Caro", carol.created_at)
        );
        store
            .create("Carol", "carol@example.com")
            .await
            .expect("old email is free again");
        assert_eq!(store.delete(1).await.unwrap().name, "Alice");
        assert!(matches!(store.get(1).await, Err(StoreError::NotFound)));
        assert_eq!(
            store.create("New", "x@example.com").await.unwrap().id,
            5,
            "ids are never reused"
        );
    }
}
