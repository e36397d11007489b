//! The rollout contract of deploy/kubernetes played back against real
//! processes: the production overlay's ws-server Deployment is rendered,
//! and its numbers (readiness path, period and failure threshold, preStop,
//! grace period, maxSurge and maxUnavailable, the drain's env) drive a
//! rolling update of three rtchat replicas behind the deploy nginx config,
//! as Kubernetes would: a new pod is added to the endpoints (nginx's DNS)
//! once its readiness probe passes, an old one gets its preStop and
//! SIGTERM and leaves the endpoints only after its probe failed the
//! threshold's number of times, and it is SIGKILLed only if the grace
//! period runs out. Several hundred clients and acknowledged traffic
//! throughout.

mod common;

use common::crowd::{Crowd, peak, sent_off};
use common::*;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const ROOM: &str = "rollout";
const NATIVE: usize = 300;
const SOCKETIO: usize = 100;
const RATE: u32 = 5;

/// What the Deployment promises, read from the rendered manifest.
#[derive(Debug)]
struct Contract {
    readiness_path: String,
    period: Duration,
    failures: u32,
    grace: Duration,
    max_surge: u64,
    max_unavailable: u64,
    pre_stop: Option<Value>,
    /// The drain's env, as flags.
    flags: Vec<String>,
    drain_duration: f64,
}

fn contract() -> Contract {
    let output = std::process::Command::new("timeout")
        .args(["60", "kubectl", "kustomize"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/kubernetes/overlays/production"
        ))
        .output()
        .unwrap();
    assert!(output.status.success(), "the overlay renders");
    let yaml = String::from_utf8(output.stdout).unwrap();
    let deployment: Value = serde_norway::Deserializer::from_str(&yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .find(|o: &Value| o["kind"] == "Deployment" && o["metadata"]["name"] == "ws-server")
        .expect("a ws-server Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let probe = &container["readinessProbe"];
    let env = |name: &str| -> String {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("{name} is set"))
            .to_owned()
    };
    let rolling = &deployment["spec"]["strategy"]["rollingUpdate"];
    let drain_duration = env("DRAIN_DURATION");
    Contract {
        readiness_path: probe["httpGet"]["path"].as_str().unwrap().to_owned(),
        period: Duration::from_secs(probe["periodSeconds"].as_u64().unwrap_or(10)),
        failures: probe["failureThreshold"].as_u64().unwrap_or(3) as u32,
        grace: Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30)),
        max_surge: rolling["maxSurge"].as_u64().unwrap(),
        max_unavailable: rolling["maxUnavailable"].as_u64().unwrap(),
        pre_stop: container["lifecycle"].get("preStop").cloned(),
        flags: vec![
            "--drain-delay".into(),
            env("DRAIN_DELAY"),
            "--drain-duration".into(),
            drain_duration.clone(),
            "--shutdown-timeout".into(),
            env("SHUTDOWN_TIMEOUT"),
            // As in tests/deploys.rs: a long-polling client whose upgrade
            // a drain cut is found out within the wait.
            "--ping-interval".into(),
            "5s".into(),
            "--ping-timeout".into(),
            "5s".into(),
        ],
        drain_duration: drain_duration.strip_suffix('s').unwrap().parse().unwrap(),
    }
}

/// The endpoints: the stand-in addresses nginx resolves `ws-server` to.
fn publish_endpoints(d: &ChatDeployment, ready: &[usize]) {
    let addrs: Vec<Ipv4Addr> = ready
        .iter()
        .map(|i| CHAT_IPS[*i].parse().unwrap())
        .collect();
    d.dns.set("ws-server", &addrs);
}

async fn probe(url: &str) -> bool {
    http_get_maybe(url).await == Some(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_played_back_from_the_manifest_loses_nothing() {
    let c = contract();
    assert_eq!(
        (c.max_surge, c.max_unavailable),
        (1, 0),
        "the playback enacts one new pod at a time, none taken early"
    );
    assert!(c.pre_stop.is_none(), "no preStop: the drain waits itself");
    let flags: Vec<&str> = c.flags.iter().map(String::as_str).collect();
    let mut d = ChatDeployment::start_with(&flags);
    let url = d.nginx.ws_url();
    let crowd = Crowd::start(&url, &d.nginx.url(""), ROOM, (NATIVE, SOCKETIO), RATE).await;

    // Pods by stand-in address: three old ones, one address free.
    let mut ready: Vec<usize> = vec![0, 1, 2];
    let mut free = 3;
    let mut retired = Vec::new();
    let mut held = Vec::new();
    let mut sigterms = Vec::new();
    let started = Instant::now();
    for (old, old_ip) in CHAT_IPS[..3].iter().enumerate() {
        // Surge: a new pod, in the endpoints once its probe passes.
        let new = chat_replica(&d.redis, free, d.ws_port, &flags);
        let new_probe = new.http_url(&c.readiness_path);
        let mut ticks = tokio::time::interval(c.period);
        loop {
            ticks.tick().await;
            if probe(&new_probe).await {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "a pod never ready"
            );
        }
        ready.push(free);
        publish_endpoints(&d, &ready);
        let slot = d
            .replicas
            .iter()
            .position(|r| r.addr.ip().to_string() == *old_ip);
        let mut pod = match slot {
            Some(i) => std::mem::replace(&mut d.replicas[i], new),
            None => unreachable!("pod {old} runs"),
        };
        held.push(pod_sockets(&pod).await);

        // Termination: SIGTERM (no preStop), out of the endpoints after
        // the probe's failure threshold, SIGKILL only past the grace.
        let terminated = Instant::now();
        sigterms.push(common::swarm::unix_ms());
        pod.signal("TERM");
        let old_probe = pod.http_url(&c.readiness_path);
        let mut failed = 0;
        while failed < c.failures {
            ticks.tick().await;
            failed = if probe(&old_probe).await {
                0
            } else {
                failed + 1
            };
        }
        ready.retain(|i| *i != old);
        publish_endpoints(&d, &ready);
        let left = c.grace.saturating_sub(terminated.elapsed());
        let exited = tokio::time::timeout(left, pod.wait_exit_within(left + DEADLINE)).await;
        let status = exited.unwrap_or_else(|_| panic!("pod {old} reached SIGKILL"));
        assert!(status.success(), "pod {old} exits 0 after its drain");
        assert!(!pod.logged("shutdown timeout"), "pod {old} drained in time");
        retired.push(pod);
        free = old;
    }
    let members = crowd.finish().await;

    // The reconnect rate stays under the drain's bound: no second with
    // more than twice its average (sockets held / drain duration). A
    // second, not 100 ms as in tests/deploys.rs: at this duration's pace
    // (about one socket in 100 ms) a window that short measures the
    // scheduling of 400 clients on two cores, not the drain. Only what a
    // pod sent off after its SIGTERM: before it, a pod may have been
    // rebalancing onto the new one, at `--rebalance-rate`.
    let most = *held.iter().max().unwrap() as f64;
    let bound = (2.0 * most / c.drain_duration).ceil() as usize;
    for (i, pod) in retired.iter().enumerate() {
        let mut sent = sent_off(pod);
        sent.retain(|at| *at >= sigterms[i]);
        let (worst, at) = peak(sent, 1000);
        assert!(
            worst <= bound,
            "pod {i}: {worst} within 1 s at {at}, bound {bound}"
        );
    }
    let mut back: Vec<u64> = members
        .iter()
        .flat_map(|m| m.reconnect_ms.clone())
        .collect();
    back.sort_unstable();
    eprintln!(
        "rollout: {} clients, {} moves, reconnect p50 {:?} ms, p99 {:?} ms, peak {:?} a second, {:.1} s in all",
        members.len(),
        back.len(),
        back.get(back.len() / 2),
        back.get(back.len() * 99 / 100),
        peak(
            members
                .iter()
                .flat_map(|m| m.closes.iter().zip(&m.reconnect_ms).map(|(c, r)| c + r))
                .collect(),
            1000
        )
        .0,
        started.elapsed().as_secs_f64()
    );
}

async fn pod_sockets(pod: &Process) -> u64 {
    let (_, metrics) = http_get(&pod.http_url("/metrics")).await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("rtchat_connections ")?.trim().parse().ok())
        .unwrap_or(0)
}
