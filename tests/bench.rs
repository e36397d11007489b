//! `rtchat bench` against real servers, briefly: its reports must be
//! complete and add up, so the tool cannot rot unnoticed. No timing
//! assertions: speed is for docs/BENCHMARKS.md.

mod common;

use common::*;
use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let output = rtchat()
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON report on stdout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_fanout_and_idle_reports_add_up() {
    let redis = Redis::start();
    let flags = ["--rate-limit", "1000", "--rate-burst", "1000"];
    let a = Process::ws_server("server-1", Some(&redis), &flags);
    let b = Process::ws_server("server-2", Some(&redis), &flags);
    let urls = format!("{},{}", a.ws_url(), b.ws_url());
    let pids = format!("{},{}", a.pid(), b.pid());
    let report = bench(&[
        "ws",
        "--url",
        &urls,
        "--members",
        "20",
        "--publishers",
        "2",
        "--rate",
        "40",
        "--duration",
        "1s",
        "--pid",
        &pids,
    ]);
    let n = |k: &str| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} missing in {report}"))
    };
    assert!(n("sent") > 0);
    assert_eq!(n("expected"), n("sent") * 20);
    assert_eq!(
        n("delivered"),
        n("expected"),
        "an unloaded run loses nothing"
    );
    assert_eq!((n("lost"), n("duplicated")), (0, 0));
    assert_eq!((n("members"), n("replicas")), (20, 2));
    for key in ["p50", "p90", "p99", "max"] {
        assert!(report["latency_ms"][key].as_f64().is_some(), "{key}");
    }
    assert!(report["latency_ms"]["p50"].as_f64() <= report["latency_ms"]["max"].as_f64());
    assert!(report["server_cpu_s"].as_f64().is_some() && report["bench_cpu_s"].as_f64().is_some());
    assert!(report["server_rss_kib"].as_u64().unwrap() > 0);

    let idle = bench(&[
        "ws",
        "--idle",
        "--url",
        &urls,
        "--members",
        "50",
        "--duration",
        "100ms",
        "--pid",
        &pids,
    ]);
    assert_eq!(idle["connections"], 50);
    assert!(idle["server_rss_after_kib"].as_u64().unwrap() > 0);
    assert!(idle["server_bytes_per_connection"].as_f64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reports_add_up() {
    let server = Process::grpc_server("grpc-1", None, &[]);
    let addr = server.grpc_url();
    let pid = server.pid().to_string();
    let unary = bench(&[
        "grpc",
        "--addr",
        &addr,
        "--connections",
        "2",
        "--streams",
        "2",
        "--count",
        "200",
        "--pid",
        &pid,
    ]);
    assert_eq!(
        (unary["calls"].as_u64(), unary["errors"].as_u64()),
        (Some(200), Some(0))
    );
    assert_eq!(unary["items"], 200);
    assert!(
        unary["latency_ms"]["p99"].as_f64().is_some() && unary["server_cpu_s"].as_f64().is_some()
    );

    let list = bench(&[
        "grpc",
        "--addr",
        &addr,
        "--rpc",
        "list",
        "--seed",
        "300",
        "--connections",
        "1",
        "--streams",
        "2",
        "--count",
        "4",
    ]);
    assert_eq!(
        (list["calls"].as_u64(), list["errors"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(list["items"], 4 * 302, "each call streams every user");
}
