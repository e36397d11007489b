//! Webhooks, for both servers: where events go, how they are signed, which
//! ones, and how long undelivered ones wait.

use crate::webhooks::{EventType, WebhookSettings};
use clap::Args;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// URLs (comma-separated) every event is POSTed to, as JSON, signed
    /// with --webhook-secret. Each receiver gets every event, in order per
    /// room, at least once. Off without it.
    #[arg(
        long,
        env = "WEBHOOK_URL",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub webhook_url: Vec<String>,

    /// Key of the HMAC-SHA256 signature in `X-Rtchat-Signature`.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Read the webhook secret from this file instead (a trailing newline
    /// is not part of it).
    #[arg(long, env = "WEBHOOK_SECRET_FILE", conflicts_with = "webhook_secret")]
    pub webhook_secret_file: Option<std::path::PathBuf>,

    /// Comma-separated event types to send (`all` for every one). By
    /// default every type but `message`, which costs one more Redis write
    /// per chat message.
    #[arg(
        long,
        env = "WEBHOOK_EVENTS",
        value_delimiter = ',',
        default_value = "member_joined,member_left,user_connected,user_disconnected,user_created,user_updated,user_deleted"
    )]
    pub webhook_events: Vec<String>,

    /// How long a receiver may take to answer one POST before it is tried
    /// again.
    #[arg(long, env = "WEBHOOK_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub webhook_timeout: Duration,

    /// How long an event waits for a receiver that stays down; older ones
    /// are dropped (counted in rtchat_webhook_events_dropped_total, logged).
    #[arg(long, env = "WEBHOOK_MAX_AGE", default_value = "24h", value_parser = humantime::parse_duration)]
    pub webhook_max_age: Duration,

    /// Events kept per queue (16 queues; rooms are spread over them) while
    /// a receiver is down; beyond it the oldest are dropped (counted,
    /// logged).
    #[arg(long, env = "WEBHOOK_MAX_QUEUE", default_value_t = 100_000)]
    pub webhook_max_queue: usize,
}

impl WebhookArgs {
    /// `None` without a URL. Reads the secret's file.
    pub fn settings(&self) -> anyhow::Result<Option<WebhookSettings>> {
        if self.webhook_url.is_empty() {
            return Ok(None);
        }
        let secret = match (&self.webhook_secret, &self.webhook_secret_file) {
            (Some(secret), _) => secret.as_bytes().to_vec(),
            (None, Some(path)) => super::auth::read_secret(path, "--webhook-secret-file")?,
            (None, None) => anyhow::bail!("--webhook-url needs --webhook-secret"),
        };
        if secret.is_empty() {
            anyhow::bail!("the webhook secret is empty");
        }
        let mut urls = Vec::new();
        for url in &self.webhook_url {
            let uri: hyper::Uri = url
                .parse()
                .map_err(|e| anyhow::anyhow!("invalid --webhook-url {url:?}: {e}"))?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                anyhow::bail!(
                    "--webhook-url {url:?}: only http:// URLs (put a TLS proxy beside rtchat for https)"
                );
            }
            urls.push(uri);
        }
        let mut events = Vec::new();
        for name in &self.webhook_events {
            if name == "all" {
                events.extend(EventType::ALL);
                continue;
            }
            let kind = EventType::parse(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown --webhook-events type {name:?} (one of: all, {})",
                    EventType::ALL.map(EventType::as_str).join(", ")
                )
            })?;
            events.push(kind);
        }
        Ok(Some(WebhookSettings {
            urls,
            secret,
            events,
            timeout: self.webhook_timeout,
            max_age: self.webhook_max_age,
            max_queue: self.webhook_max_queue.max(1),
        }))
    }
}
