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
//! throughout. Three plays: a rolling update, a scale-out from three pods
//! to four, and a node drain of two pods under the PodDisruptionBudget.

mod common;

use common::crowd::{Crowd, peak, sent_off, sockets};
use common::*;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::sync::Mutex;
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
    /// The PodDisruptionBudget's maxUnavailable for ws-server.
    pdb_max_unavailable: u64,
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
    let objects: Vec<Value> = serde_norway::Deserializer::from_str(&yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect();
    let named = |kind: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == "ws-server")
            .unwrap_or_else(|| panic!("a ws-server {kind}"))
    };
    let deployment = named("Deployment");
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
        pdb_max_unavailable: named("PodDisruptionBudget")["spec"]["maxUnavailable"]
            .as_u64()
            .unwrap(),
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

/// Pods on stand-in addresses (an index into `CHAT_IPS`) and the endpoints
/// nginx resolves `ws-server` to, driven by the contract's numbers.
struct Cluster<'a> {
    d: &'a ChatDeployment,
    c: &'a Contract,
    endpoints: Mutex<Vec<usize>>,
    started: Instant,
}

/// A pod that was terminated: its process (for its log), when it got
/// SIGTERM (Unix ms), and the sockets it held then.
struct Retired {
    pod: Process,
    sigterm: u64,
    held: u64,
}

impl<'a> Cluster<'a> {
    fn new(d: &'a ChatDeployment, c: &'a Contract, ready: &[usize]) -> Self {
        let cluster = Self {
            d,
            c,
            endpoints: Mutex::new(ready.to_vec()),
            started: Instant::now(),
        };
        cluster.publish();
        cluster
    }

    fn publish(&self) {
        let addrs: Vec<Ipv4Addr> = self
            .endpoints
            .lock()
            .unwrap()
            .iter()
            .map(|i| CHAT_IPS[*i].parse().unwrap())
            .collect();
        self.d.dns.set("ws-server", &addrs);
    }

    /// A new pod at `ip`, in the endpoints once its readiness probe passes
    /// (polled at the probe's period).
    async fn create(&self, ip: usize) -> Process {
        let flags: Vec<&str> = self.c.flags.iter().map(String::as_str).collect();
        let pod = chat_replica(&self.d.redis, ip, self.d.ws_port, &flags);
        let url = pod.http_url(&self.c.readiness_path);
        let mut ticks = tokio::time::interval(self.c.period);
        loop {
            ticks.tick().await;
            if probe(&url).await {
                break;
            }
            assert!(
                self.started.elapsed() < Duration::from_secs(300),
                "pod {ip} never ready"
            );
        }
        self.endpoints.lock().unwrap().push(ip);
        self.publish();
        pod
    }

    /// SIGTERM (no preStop), out of the endpoints once the readiness probe
    /// failed the threshold's number of times in a row, and SIGKILL only
    /// past the grace period, which must not come.
    async fn terminate(&self, mut pod: Process, ip: usize) -> Retired {
        let held = sockets(&pod).await;
        let terminated = Instant::now();
        let sigterm = common::swarm::unix_ms();
        pod.signal("TERM");
        let url = pod.http_url(&self.c.readiness_path);
        let mut ticks = tokio::time::interval(self.c.period);
        let mut failed = 0;
        while failed < self.c.failures {
            ticks.tick().await;
            failed = if probe(&url).await { 0 } else { failed + 1 };
        }
        self.endpoints.lock().unwrap().retain(|i| *i != ip);
        self.publish();
        let left = self.c.grace.saturating_sub(terminated.elapsed());
        let exited = tokio::time::timeout(left, pod.wait_exit_within(left + DEADLINE)).await;
        let status = exited.unwrap_or_else(|_| panic!("pod {ip} reached SIGKILL"));
        assert!(status.success(), "pod {ip} exits 0 after its drain");
        assert!(!pod.logged("shutdown timeout"), "pod {ip} drained in time");
        Retired { pod, sigterm, held }
    }
}

async fn probe(url: &str) -> bool {
    http_get_maybe(url).await == Some(200)
}

/// Starts the deployment with the contract's drain and a crowd on it; the
/// three pods are handed out by address.
async fn start(c: &Contract) -> (ChatDeployment, Crowd, Vec<Process>) {
    let flags: Vec<&str> = c.flags.iter().map(String::as_str).collect();
    let mut d = ChatDeployment::start_with(&flags);
    let crowd = Crowd::start(
        &d.nginx.ws_url(),
        &d.nginx.url(""),
        ROOM,
        (NATIVE, SOCKETIO),
        RATE,
    )
    .await;
    let pods = std::mem::take(&mut d.replicas);
    (d, crowd, pods)
}

/// The reconnect rate stays under the drain's bound: no second with more
/// than twice its average (sockets held / drain duration). A second, not
/// 100 ms as in tests/deploys.rs: at this duration's pace (about one
/// socket in 100 ms) a window that short measures the scheduling of 400
/// clients on two cores, not the drain. Only what a pod sent off after its
/// SIGTERM: before it, a pod may have been rebalancing onto a new one, at
/// `--rebalance-rate`.
fn check_pace(retired: &[Retired], c: &Contract) {
    let most = retired.iter().map(|r| r.held).max().unwrap() as f64;
    let bound = (2.0 * most / c.drain_duration).ceil() as usize;
    for (i, r) in retired.iter().enumerate() {
        let mut sent = sent_off(&r.pod);
        sent.retain(|at| *at >= r.sigterm);
        let (worst, at) = peak(sent, 1000);
        assert!(
            worst <= bound,
            "pod {i}: {worst} within 1 s at {at}, bound {bound}"
        );
    }
}

fn report(what: &str, members: &[common::swarm::History], started: Instant) {
    let mut back: Vec<u64> = members
        .iter()
        .flat_map(|m| m.reconnect_ms.clone())
        .collect();
    back.sort_unstable();
    let arrivals = members
        .iter()
        .flat_map(|m| m.closes.iter().zip(&m.reconnect_ms).map(|(c, r)| c + r))
        .collect();
    eprintln!(
        "{what}: {} clients, {} moves, reconnect p50 {:?} ms, p99 {:?} ms, peak {} a second, {:.1} s in all",
        members.len(),
        back.len(),
        back.get(back.len() / 2),
        back.get(back.len() * 99 / 100),
        peak(arrivals, 1000).0,
        started.elapsed().as_secs_f64()
    );
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
    let (d, crowd, pods) = start(&c).await;
    let cluster = Cluster::new(&d, &c, &[0, 1, 2]);
    // Surge: a new pod on the free address, ready, then an old one goes.
    let mut free = 3;
    let (mut running, mut retired) = (Vec::new(), Vec::new());
    for (old, pod) in pods.into_iter().enumerate() {
        running.push(cluster.create(free).await);
        retired.push(cluster.terminate(pod, old).await);
        free = old;
    }
    let members = crowd.finish().await;
    check_pace(&retired, &c);
    report("rollout", &members, cluster.started);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_out_played_back_fills_the_new_pod() {
    let c = contract();
    let (d, crowd, pods) = start(&c).await;
    let cluster = Cluster::new(&d, &c, &[0, 1, 2]);
    let new = cluster.create(3).await;
    // Rebalancing reaches the new pod: within the slack of its fair share
    // (a tenth, at least ten sockets) within a minute.
    let total = (NATIVE + SOCKETIO + 2) as f64;
    let fair = (total / 4.0).ceil();
    let least = fair - (fair * 0.1).max(10.0) - 2.0;
    wait_for(
        "the new pod to hold its share",
        Duration::from_secs(60),
        async || (sockets(&new).await as f64 >= least).then_some(()),
    )
    .await;
    let members = crowd.finish().await;
    report("scale-out", &members, cluster.started);
    drop(pods);
}

/// A node drain evicts two pods at once; the PodDisruptionBudget lets one
/// go, and the second only once the first one's replacement is ready: their
/// drains overlap, and the third pod and the replacements take everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_drain_of_two_pods_played_back_within_the_budget() {
    let c = contract();
    assert_eq!(c.pdb_max_unavailable, 1, "the budget the playback enacts");
    let (d, crowd, mut pods) = start(&c).await;
    let cluster = Cluster::new(&d, &c, &[0, 1, 2]);
    let b = pods.remove(1);
    let a = pods.remove(0);
    let (first, (second, replacements)) = tokio::join!(cluster.terminate(a, 0), async {
        // The budget (at most one of three unavailable) lets the second
        // eviction through once the first one's replacement is ready.
        let a2 = cluster.create(3).await;
        tokio::join!(cluster.terminate(b, 1), async {
            (a2, cluster.create(4).await)
        })
    });
    let members = crowd.finish().await;
    check_pace(&[first, second], &c);
    report("node drain", &members, cluster.started);
    drop((pods, replacements));
}
