//! The UserService RPCs: validate, call the store, announce the change.
//!
//! Every change is published on the shared broadcast, and every replica
//! fans what it receives out to its own SubscribeToUpdates streams through
//! its [`UpdateFeed`]: a writer never waits for a subscriber, a subscriber
//! that falls too far behind is ended with RESOURCE_EXHAUSTED, and one
//! whose replica lost updates in an outage with UNAVAILABLE.

use super::pb::{
    self, CreateUserRequest, Empty, UpdateUserRequest, UserRequest, UserResponse, UserUpdate,
};
use super::store::{StoreError, User, UserStore};
use super::updates::{FeedItem, UPDATES_TOPIC, UpdateFeed};
use super::validate;
use crate::broadcast::Broadcast;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream, errors::BroadcastStreamRecvError};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// Users read from the store per ListUsers page.
const LIST_PAGE: usize = 256;

/// Users queued per ListUsers stream ahead of the client.
const LIST_QUEUE: usize = 64;

use crate::webhooks::EventType;

pub struct UserService {
    store: Arc<dyn UserStore>,
    broker: Arc<dyn Broadcast>,
    updates: Arc<UpdateFeed>,
    shutdown: CancellationToken,
    /// Where user changes are posted as chat messages (room `users`).
    rooms: Arc<crate::hub::Backend>,
}

impl UserService {
    pub fn new(
        store: Arc<dyn UserStore>,
        broker: Arc<dyn Broadcast>,
        updates: Arc<UpdateFeed>,
        shutdown: CancellationToken,
        rooms: Arc<crate::hub::Backend>,
    ) -> Self {
        Self {
            store,
            broker,
            updates,
            shutdown,
            rooms,
        }
    }

    async fn announce(&self, action: &str, user: &UserResponse) {
        let update = UserUpdate {
            action: action.to_owned(),
            user: Some(user.clone()),
        };
        if let Err(err) = self
            .broker
            .publish(UPDATES_TOPIC, Bytes::from(update.encode_to_vec()))
            .await
        {
            // The change itself is stored; only its announcement is lost.
            tracing::warn!(%err, action, id = user.id, "could not announce a user change");
        }
        if let Err(err) = super::users_room::post(&self.rooms, action, user).await {
            tracing::warn!(%err, action, id = user.id, "could not post a user change to room users");
        }
        let kind = match action {
            "created" => EventType::UserCreated,
            "updated" => EventType::UserUpdated,
            _ => EventType::UserDeleted,
        };
        // Keyed by the user: one user's changes arrive in order.
        let key = format!("user:{}", user.id);
        self.rooms.webhooks().emit(kind, &key, || {
            let data = serde_json::json!({
                "id": user.id,
                "name": user.name,
                "email": user.email,
                "created_at": user.created_at,
            });
            serde_json::to_vec(&data).expect("event data always serialises")
        });
    }
}

fn response(user: User) -> UserResponse {
    UserResponse {
        id: user.id,
        name: user.name,
        email: user.email,
        created_at: user.created_at,
    }
}

fn status(err: StoreError) -> Status {
    match err {
        StoreError::NotFound => Status::not_found("User not found"),
        StoreError::EmailTaken(_) => Status::already_exists(err.to_string()),
        StoreError::Unavailable(_) => Status::unavailable(err.to_string()),
    }
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl pb::user_service_server::UserService for UserService {
    async fn get_user(
        &self,
        request: Request<UserRequest>,
    ) -> Result<Response<UserResponse>, Status> {
        let user = self
            .store
            .get(request.into_inner().id)
            .await
            .map_err(status)?;
        Ok(Response::new(response(user)))
    }

    type ListUsersStream = ReceiverStream<Result<UserResponse, Status>>;

    async fn list_users(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListUsersStream>, Status> {
        // The first page is read before answering, so a store outage is a
        // plain UNAVAILABLE status rather than a stream that breaks.
        let first = self.store.page(0, LIST_PAGE).await.map_err(status)?;
        let (tx, rx) = mpsc::channel(LIST_QUEUE);
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut page = first;
            loop {
                let full = page.len() == LIST_PAGE;
                let last = page.last().map(|u| u.id);
                for user in page {
                    if tx.send(Ok(response(user))).await.is_err() {
                        return; // the client went away
                    }
                }
                let (true, Some(after)) = (full, last) else {
                    return;
                };
                page = match store.page(after, LIST_PAGE).await {
                    Ok(page) => page,
                    Err(err) => {
                        let _ = tx.send(Err(status(err))).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<UserResponse>, Status> {
        super::auth::caller(&request).may_write()?;
        let CreateUserRequest { name, email } = request.into_inner();
        validate::name(&name).map_err(Status::invalid_argument)?;
        validate::email(&email).map_err(Status::invalid_argument)?;
        let user = response(self.store.create(&name, &email).await.map_err(status)?);
        self.announce("created", &user).await;
        Ok(Response::new(user))
    }

    type SubscribeToUpdatesStream = Streamed<UserUpdate>;

    async fn subscribe_to_updates(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::SubscribeToUpdatesStream>, Status> {
        let updates = BroadcastStream::new(self.updates.subscribe())
            .map(|item| match item {
                Ok(FeedItem::Update(update)) => Ok(update),
                Ok(FeedItem::Gap) => Err(Status::unavailable(
                    "updates were lost while this replica was cut off from Redis; subscribe again",
                )),
                Err(BroadcastStreamRecvError::Lagged(missed)) => Err(Status::resource_exhausted(
                    format!("subscriber fell {missed} updates behind; subscribe again"),
                )),
            })
            // tonic ends the call at the first error; shutdown ends it cleanly.
            .take_until(self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(updates)))
    }

    async fn update_user(
        &self,
        request: Request<UpdateUserRequest>,
    ) -> Result<Response<UserResponse>, Status> {
        super::auth::caller(&request).may_write()?;
        let UpdateUserRequest { id, name, email } = request.into_inner();
        let name = (!name.is_empty()).then_some(name);
        let email = (!email.is_empty()).then_some(email);
        if let Some(name) = &name {
            validate::name(name).map_err(Status::invalid_argument)?;
        }
        if let Some(email) = &email {
            validate::email(email).map_err(Status::invalid_argument)?;
        }
        let user = self
            .store
            .update(id, name.as_deref(), email.as_deref())
            .await
            .map_err(status)?;
        let user = response(user);
        self.announce("updated", &user).await;
        Ok(Response::new(user))
    }

    async fn delete_user(
        &self,
        request: Request<UserRequest>,
    ) -> Result<Response<UserResponse>, Status> {
        super::auth::caller(&request).may_write()?;
        let user = response(
            self.store
                .delete(request.into_inner().id)
                .await
                .map_err(status)?,
        );
        self.announce("deleted", &user).await;
        Ok(Response::new(user))
    }
}
