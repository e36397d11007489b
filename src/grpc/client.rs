//! `rtchat grpc-client`: every UserService call from the command line.
//!
//! Results go to stdout, as the lines SPEC fixes or as one JSON object per
//! line with `--json`; a failed call prints its gRPC code and message to
//! stderr and exits non-zero.

use super::pb::user_service_client::UserServiceClient;
use super::pb::{
    CreateUserRequest, Empty, UpdateUserRequest, UserRequest, UserResponse, UserUpdate,
};
use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(
        long,
        env = "GRPC_ADDR",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub addr: String,

    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Deadline for connecting and for each unary call.
    #[arg(long, env = "GRPC_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: Duration,

    /// Bearer token, when the server requires one.
    #[arg(long, env = "GRPC_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,

    #[command(subcommand)]
    pub call: Call,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Call {
    /// Print one user.
    Get { id: i32 },
    /// Print every user, in id order.
    List,
    /// Create a user.
    Create { name: String, email: String },
    /// Change a user's name and/or email.
    Update {
        id: i32,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
    },
    /// Delete a user.
    Delete { id: i32 },
    /// Print changes as they happen, from every replica.
    Subscribe {
        /// Stop after this many updates (default: until interrupted).
        #[arg(long)]
        count: Option<usize>,
    },
    /// Ask the standard health service; exits 0 only when SERVING.
    Health {
        /// Service to ask about ("" for the whole server).
        #[arg(long, default_value = super::SERVICE_NAME)]
        service: String,
    },
    /// The classic walk-through: get 1, list, create Charlie, watch an
    /// update. Ends by itself and can be run again and again.
    Demo,
}

type Client = UserServiceClient<InterceptedService<Channel, Auth>>;

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct Auth(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    let channel = Endpoint::from_shared(args.addr.clone())
        .with_context(|| format!("invalid --addr {:?}", args.addr))?
        .connect_timeout(args.timeout)
        .connect()
        .await
        .map_err(|e| {
            anyhow!(
                "cannot connect to {}: {}",
                args.addr,
                crate::logging::source_chain(&e)
            )
        })?;
    if let Call::Health { service } = &args.call {
        return health(channel, service, &args).await;
    }
    let token = match &args.token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse()
                .context("the token is not valid header text")?,
        ),
        None => None,
    };
    let mut client = UserServiceClient::with_interceptor(channel, Auth(token));
    let out = Printer { json: args.json };
    match args.call.clone() {
        Call::Get { id } => out.user_line("User:", &get(&mut client, id, &args).await?),
        Call::List => drop(list(&mut client, &out).await?),
        Call::Create { name, email } => {
            let user =
                call(client.create_user(unary(CreateUserRequest { name, email }, &args))).await?;
            out.created(&user);
        }
        Call::Update { id, name, email } => {
            let request = UpdateUserRequest {
                id,
                name: name.unwrap_or_default(),
                email: email.unwrap_or_default(),
            };
            let user = call(client.update_user(unary(request, &args))).await?;
            out.with_id("Updated", &user);
        }
        Call::Delete { id } => {
            let user = call(client.delete_user(unary(UserRequest { id }, &args))).await?;
            out.with_id("Deleted", &user);
        }
        Call::Subscribe { count } => {
            let mut updates = call(client.subscribe_to_updates(Empty {})).await?;
            let mut seen = 0;
            while count.is_none_or(|n| seen < n) {
                match updates.next().await {
                    Some(update) => out.update(&update.map_err(describe)?),
                    None => bail!("the server ended the stream"),
                }
                seen += 1;
            }
        }
        Call::Health { .. } => unreachable!("handled above"),
        Call::Demo => demo(&mut client, &args, &out).await?,
    }
    Ok(())
}

fn unary<T>(message: T, args: &ClientArgs) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(args.timeout);
    request
}

async fn call<T>(
    response: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> anyhow::Result<T> {
    response
        .await
        .map(tonic::Response::into_inner)
        .map_err(describe)
}

async fn get(client: &mut Client, id: i32, args: &ClientArgs) -> anyhow::Result<UserResponse> {
    call(client.get_user(unary(UserRequest { id }, args))).await
}

async fn list(client: &mut Client, out: &Printer) -> anyhow::Result<Vec<UserResponse>> {
    let mut stream = call(client.list_users(Empty {})).await?;
    let mut users = Vec::new();
    while let Some(user) = stream.next().await {
        let user = user.map_err(describe)?;
        out.user_line("-", &user);
        users.push(user);
    }
    Ok(users)
}

async fn health(channel: Channel, service: &str, args: &ClientArgs) -> anyhow::Result<()> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let request = unary(
        HealthCheckRequest {
            service: service.to_owned(),
        },
        args,
    );
    let status = call(HealthClient::new(channel).check(request)).await?;
    let name = status.status().as_str_name();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"service": service, "status": name})
        );
    } else {
        println!("{name}");
    }
    if status.status() != tonic_health::pb::health_check_response::ServingStatus::Serving {
        bail!("{service:?} is {name}");
    }
    Ok(())
}

/// How long the demo waits for its own update to come back.
const DEMO_WAIT: Duration = Duration::from_secs(5);

async fn demo(client: &mut Client, args: &ClientArgs, out: &Printer) -> anyhow::Result<()> {
    // Subscribe first, so the change made below is sure to be seen.
    let mut updates = call(client.subscribe_to_updates(Empty {})).await?;

    out.heading("Get User");
    out.user_line("User:", &get(client, 1, args).await?);

    out.heading("List Users (Streaming)");
    let users = list(client, out).await?;

    out.heading("Create User");
    let request = CreateUserRequest {
        name: "Charlie".into(),
        email: "charlie@example.com".into(),
    };
    let charlie = match client.create_user(unary(request, args)).await {
        Ok(response) => {
            let user = response.into_inner();
            out.created(&user);
            user
        }
        Err(status) if status.code() == Code::AlreadyExists => {
            let existing = users
                .into_iter()
                .find(|u| u.email.eq_ignore_ascii_case("charlie@example.com"));
            let user = existing.context("charlie@example.com exists but was not listed")?;
            out.note(&format!("Charlie already exists with ID {}", user.id));
            user
        }
        Err(status) => return Err(describe(status)),
    };

    out.heading("Subscribe to Updates");
    let touch = UpdateUserRequest {
        id: charlie.id,
        name: charlie.name.clone(),
        email: String::new(),
    };
    call(client.update_user(unary(touch, args))).await?;
    let wait = tokio::time::timeout(DEMO_WAIT, async {
        while let Some(update) = updates.next().await {
            let update = update.map_err(describe)?;
            out.update(&update);
            if update.action == "updated"
                && update.user.as_ref().is_some_and(|u| u.id == charlie.id)
            {
                return Ok(());
            }
        }
        bail!("the server ended the update stream")
    });
    wait.await
        .map_err(|_| anyhow!("no update arrived within {DEMO_WAIT:?}"))?
}

struct Printer {
    json: bool,
}

impl Printer {
    fn heading(&self, title: &str) {
        if !self.json {
            println!("=== {title} ===");
        }
    }

    fn note(&self, text: &str) {
        if self.json {
            println!("{}", serde_json::json!({ "note": text }));
        } else {
            println!("{text}");
        }
    }

    fn user_line(&self, prefix: &str, user: &UserResponse) {
        if self.json {
            println!("{}", user_json(user));
        } else {
            println!("{prefix} {} ({})", user.name, user.email);
        }
    }

    fn created(&self, user: &UserResponse) {
        self.with_id("Created", user);
    }

    fn with_id(&self, verb: &str, user: &UserResponse) {
        if self.json {
            println!("{}", user_json(user));
        } else {
            println!("{verb}: {} with ID {}", user.name, user.id);
        }
    }

    fn update(&self, update: &UserUpdate) {
        let user = update.user.clone().unwrap_or_default();
        if self.json {
            println!(
                "{}",
                serde_json::json!({"action": update.action, "user": user_json(&user)})
            );
        } else {
            println!("{}: {}", update.action, user.name);
        }
    }
}

fn user_json(user: &UserResponse) -> serde_json::Value {
    serde_json::json!({"id": user.id, "name": user.name, "email": user.email, "created_at": user.created_at})
}

/// "NOT_FOUND: User not found", the way gRPC tools name codes.
fn describe(status: Status) -> anyhow::Error {
    let code = match status.code() {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    };
    anyhow!("{code}: {}", status.message())
}
