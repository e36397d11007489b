//! gRPC user changes during the faults, and one `SubscribeToUpdates`
//! stream at a time that must see every change made while it was open
//! (from the change's request on) or end with UNAVAILABLE.

use crate::common::grpc::create;
use crate::common::{DEADLINE, Endpoint, Process};
use rtchat::grpc::pb::Empty;
use rtchat::grpc::pb::user_service_client::UserServiceClient;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

#[derive(Default)]
struct Seen {
    /// Per stream: when it opened, the user ids it delivered, how it
    /// ended (`None`: still open).
    streams: Vec<(Instant, HashSet<i32>, Option<tonic::Code>)>,
}

pub struct Users {
    writer: JoinHandle<Vec<(Instant, i32)>>,
    reader: JoinHandle<()>,
    seen: Arc<Mutex<Seen>>,
}

pub fn start(grpc: &Process, quiet: CancellationToken) -> Users {
    let url = grpc.grpc_url();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let reader = {
        let (url, seen) = (url.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok(mut c) = userservice_client(&url).await else {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                };
                let opened = Instant::now();
                let Ok(stream) = c.subscribe_to_updates(Empty {}).await else {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                };
                let mut stream = stream.into_inner();
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.streams.push((opened, HashSet::new(), None));
                    seen.streams.len() - 1
                };
                let end = loop {
                    match stream.message().await {
                        Ok(Some(update)) => {
                            if let Some(user) = update.user {
                                seen.lock().unwrap().streams[n].1.insert(user.id);
                            }
                        }
                        Ok(None) => break tonic::Code::Ok,
                        Err(status) => break status.code(),
                    }
                };
                seen.lock().unwrap().streams[n].2 = Some(end);
            }
        })
    };
    let writer = tokio::spawn(async move {
        let mut made = Vec::new();
        let mut n = 0;
        while !quiet.is_cancelled() {
            n += 1;
            let asked = Instant::now();
            if let Ok(mut c) = userservice_client(&url).await {
                let call = c.create_user(create(
                    &format!("Chaos {n}"),
                    &format!("chaos{n}@example.com"),
                ));
                if let Ok(Ok(user)) = tokio::time::timeout(Duration::from_secs(3), call).await {
                    made.push((asked, user.into_inner().id));
                }
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        made
    });
    Users {
        writer,
        reader,
        seen,
    }
}

async fn userservice_client(
    url: &str,
) -> Result<UserServiceClient<Channel>, tonic::transport::Error> {
    UserServiceClient::connect(url.to_owned()).await
}

impl Users {
    /// How many changes were made, and the broken promises.
    pub async fn finish(self) -> (usize, Vec<String>) {
        let made = self.writer.await.unwrap();
        // The last change reaches the open stream within the deadline.
        let last = made.last().map(|(_, id)| *id);
        let end = Instant::now() + DEADLINE;
        while let Some(last) = last {
            let has = {
                let seen = self.seen.lock().unwrap();
                seen.streams
                    .last()
                    .is_some_and(|s| s.1.contains(&last) && s.2.is_none())
            };
            if has || Instant::now() > end {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.reader.abort();
        let seen = self.seen.lock().unwrap();
        let mut broken = Vec::new();
        for (i, (opened, ids, end)) in seen.streams.iter().enumerate() {
            match end {
                Some(tonic::Code::Unavailable) => {}
                Some(code) => broken.push(format!("stream {i} ended with {code:?}")),
                None => {
                    for (asked, id) in &made {
                        if asked > opened && !ids.contains(id) {
                            broken.push(format!("stream {i} missed user {id}"));
                        }
                    }
                }
            }
        }
        (made.len(), broken)
    }
}
