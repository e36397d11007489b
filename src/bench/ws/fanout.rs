//! The timed fan-out run: publishers at a fixed total rate, every member
//! counting what it receives per sequence number.

use super::super::latency_histogram;
use super::super::usage::Meter;
use super::clients::{connect, open_members};
use super::wire::{Protocol, now_micros, parse_bench_text};
use super::{FanoutReport, Socket, WsBenchArgs};
use crate::bench::Percentiles;
use anyhow::bail;
use futures_util::FutureExt;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// What every member shares: the running total, for progress and drain.
struct Tally {
    delivered: AtomicU64,
}

pub(super) async fn run(args: &WsBenchArgs) -> anyhow::Result<FanoutReport> {
    if args.publishers == 0 || args.rate <= 0.0 {
        bail!("need at least one publisher and a positive --rate");
    }
    let max_messages =
        (args.rate * args.duration.as_secs_f64()).ceil() as usize + args.publishers + 1;
    let tally = Arc::new(Tally {
        delivered: AtomicU64::new(0),
    });
    let members = open_members(args).await?;
    let mut publishers = Vec::with_capacity(args.publishers);
    for i in 0..args.publishers {
        publishers.push(connect(&args.urls[i % args.urls.len()], None, args.protocol).await?);
    }
    eprintln!(
        "  {} members and {} publishers ready",
        members.len(),
        publishers.len()
    );

    let stop_members = CancellationToken::new();
    let mut receivers = Vec::with_capacity(members.len());
    for ws in members {
        receivers.push(tokio::spawn(receive(
            ws,
            tally.clone(),
            stop_members.clone(),
            max_messages,
            args.protocol,
        )));
    }

    let rooms: Arc<Vec<String>> = Arc::new((0..args.rooms).map(|k| args.room_name(k)).collect());
    let meter = Meter::start(&args.pids, &args.redis_pid);
    let started = Instant::now();
    let seq = Arc::new(AtomicU64::new(0));
    let deadline = started + args.duration;
    let interval = Duration::from_secs_f64(args.publishers as f64 / args.rate);
    let mut senders = Vec::new();
    for (i, ws) in publishers.into_iter().enumerate() {
        let offset = interval.mul_f64(i as f64 / args.publishers as f64);
        let (seq, rooms, size) = (seq.clone(), rooms.clone(), args.size);
        senders.push(tokio::spawn(publish(
            ws,
            args.protocol,
            seq,
            rooms,
            size,
            started + offset,
            interval,
            deadline,
            max_messages,
        )));
    }
    let progress = spawn_progress(seq.clone(), tally.clone(), started);
    for sender in senders {
        sender.await??;
    }
    let sent = seq.load(Ordering::SeqCst);
    // Message k goes to room k mod N, whose members are those i with
    // i mod N == k mod N.
    let in_room = |k: usize| ((args.members - k) as u64).div_ceil(args.rooms as u64);
    let expected: u64 = (0..sent as usize).map(|n| in_room(n % args.rooms)).sum();
    // Wait for stragglers, stopping early once everything arrived.
    let drain_end = Instant::now() + args.drain;
    while tally.delivered.load(Ordering::SeqCst) < expected && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let usage = meter.stop();
    progress.abort();
    stop_members.cancel();
    let mut latency = latency_histogram();
    let mut delivered_unique = 0u64;
    let mut duplicated = 0u64;
    for (i, receiver) in receivers.into_iter().enumerate() {
        let seen = receiver.await?;
        latency.add(seen.latency)?;
        let own = seen.counts[..sent as usize]
            .iter()
            .skip(i % args.rooms)
            .step_by(args.rooms);
        for &count in own {
            delivered_unique += u64::from(count.min(1));
            duplicated += u64::from(count.saturating_sub(1));
        }
    }
    let delivered = tally.delivered.load(Ordering::SeqCst);
    Ok(FanoutReport {
        members: args.members,
        rooms: args.rooms,
        publishers: args.publishers,
        replicas: args.urls.len(),
        target_rate: args.rate,
        duration_s: args.duration.as_secs_f64(),
        sent,
        expected,
        delivered,
        lost: expected - delivered_unique,
        duplicated,
        deliveries_per_s: delivered as f64 / args.duration.as_secs_f64(),
        latency_ms: Percentiles::from_micros(&latency),
        server_cpu_us_per_delivery: usage
            .server_cpu_s
            .filter(|_| delivered > 0)
            .map(|s| s * 1e6 / delivered as f64),
        server_cpu_us_per_message: usage
            .server_cpu_s
            .filter(|_| sent > 0)
            .map(|s| s * 1e6 / sent as f64),
        redis_cpu_us_per_message: usage
            .redis_cpu_s
            .filter(|_| sent > 0)
            .map(|s| s * 1e6 / sent as f64),
        usage,
    })
}

#[allow(clippy::too_many_arguments)]
async fn publish(
    mut ws: Socket,
    protocol: Protocol,
    seq: Arc<AtomicU64>,
    rooms: Arc<Vec<String>>,
    size: usize,
    first: Instant,
    interval: Duration,
    deadline: Instant,
    max_messages: usize,
) -> anyhow::Result<()> {
    let mut ticks = tokio::time::interval_at(first.into(), interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        // Read whatever the server sends meanwhile (errors, pings), so it
        // never blocks on this connection.
        let tick = tokio::select! {
            tick = ticks.tick() => tick,
            frame = ws.next() => {
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(reply) = protocol.reply(&text) {
                            ws.send(Message::text(reply)).await?;
                        } else if text.contains(r#""type":"error""#) {
                            eprintln!("  publisher got an error: {text}");
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(err.into()),
                    None => bail!("the server closed a publisher's connection"),
                }
                continue;
            }
        };
        if tick.into_std() >= deadline {
            break;
        }
        let n = seq.fetch_add(1, Ordering::SeqCst);
        if n as usize >= max_messages {
            seq.fetch_sub(1, Ordering::SeqCst);
            break;
        }
        let mut text = format!("b{n} {}", now_micros());
        if text.len() < size {
            text.push(' ');
            text.extend(std::iter::repeat_n('x', size - text.len()));
        }
        let room = &rooms[n as usize % rooms.len()];
        ws.send(Message::text(protocol.message(room, &text)))
            .await?;
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// Reads one member's frames until stopped; returns its latency histogram.
/// What one member saw.
struct Received {
    latency: hdrhistogram::Histogram<u64>,
    /// Deliveries per sequence number (saturating), for loss and duplicates.
    counts: Vec<u8>,
}

/// Deliveries a member counts before adding them to the shared total: one
/// contended atomic per batch instead of per message.
const TALLY_BATCH: u64 = 64;

/// Reads one member's frames until stopped.
async fn receive(
    mut ws: Socket,
    tally: Arc<Tally>,
    stop: CancellationToken,
    messages: usize,
    protocol: Protocol,
) -> Received {
    let mut seen = Received {
        latency: latency_histogram(),
        counts: vec![0; messages],
    };
    let mut unreported = 0;
    let stop = stop.cancelled_owned();
    tokio::pin!(stop);
    loop {
        // Report the batch whenever the socket has nothing more right now,
        // so the total is exact while the run drains.
        let frame = match ws.next().now_or_never() {
            Some(frame) => frame,
            None => {
                tally
                    .delivered
                    .fetch_add(std::mem::take(&mut unreported), Ordering::Relaxed);
                tokio::select! {
                    frame = ws.next() => frame,
                    _ = &mut stop => break,
                }
            }
        };
        let Some(Ok(Message::Text(text))) = frame else {
            if matches!(frame, Some(Ok(_))) {
                continue;
            }
            break;
        };
        if let Some(reply) = protocol.reply(&text) {
            let _ = ws.send(Message::text(reply)).await;
            continue;
        }
        let now = now_micros();
        if let Some((n, sent_at)) = parse_bench_text(&text)
            && let Some(count) = seen.counts.get_mut(n as usize)
        {
            *count = count.saturating_add(1);
            unreported += 1;
            if unreported >= TALLY_BATCH {
                tally
                    .delivered
                    .fetch_add(std::mem::take(&mut unreported), Ordering::Relaxed);
            }
            let _ = seen.latency.record(now.saturating_sub(sent_at).max(1));
        }
    }
    tally.delivered.fetch_add(unreported, Ordering::Relaxed);
    let _ = ws.close(None).await;
    seen
}

fn spawn_progress(
    seq: Arc<AtomicU64>,
    tally: Arc<Tally>,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.tick().await;
        loop {
            ticks.tick().await;
            eprintln!(
                "  {:>5.1} s  sent {:>8}  delivered {:>10}",
                started.elapsed().as_secs_f64(),
                seq.load(Ordering::Relaxed),
                tally.delivered.load(Ordering::Relaxed)
            );
        }
    })
}
