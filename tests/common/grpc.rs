//! gRPC client helpers shared by the UserService tests.

use super::{DEADLINE, Endpoint};
use futures_util::StreamExt;
use rtchat::grpc::pb::user_service_client::UserServiceClient;
use rtchat::grpc::pb::{CreateUserRequest, Empty, UserResponse, UserUpdate};
use std::time::Duration;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

pub async fn client(server: &impl Endpoint) -> UserServiceClient<Channel> {
    UserServiceClient::connect(server.grpc_url())
        .await
        .expect("connect")
}

pub fn create(name: &str, email: &str) -> CreateUserRequest {
    CreateUserRequest {
        name: name.into(),
        email: email.into(),
    }
}

pub async fn list(c: &mut UserServiceClient<Channel>) -> Vec<UserResponse> {
    let stream = c.list_users(Empty {}).await.unwrap().into_inner();
    stream.map(Result::unwrap).collect().await
}

pub async fn health(server: &impl Endpoint) -> Result<ServingStatus, tonic::Status> {
    let channel = Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: "userservice.UserService".into(),
    });
    request.set_timeout(Duration::from_secs(2));
    Ok(h.check(request).await?.into_inner().status())
}

pub async fn next_update(stream: &mut tonic::Streaming<UserUpdate>) -> UserUpdate {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("an update in time")
        .expect("stream open")
        .unwrap()
}
