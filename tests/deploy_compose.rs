//! deploy/docker-compose.yml, cross-checked against the Dockerfile, the
//! nginx and Envoy configs and the binary's own command line. (No Docker
//! engine runs here; everything a compose run depends on is checked.)

mod common;

use clap::Parser;
use serde_norway::Value;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose() -> Value {
    let mut value: Value =
        serde_norway::from_str(&read("deploy/docker-compose.yml")).expect("compose file parses");
    // An anchor that merges another (x-grpc-server merges x-rtchat) needs a
    // second pass, as YAML merge keys nest.
    for _ in 0..3 {
        value.apply_merge().expect("merge keys resolve");
    }
    value
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn env<'a>(service: &'a Value, key: &str) -> &'a str {
    service["environment"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} not set"))
}

fn seconds(text: &str) -> u64 {
    humantime::parse_duration(text).unwrap().as_secs()
}

const RTCHAT_SERVICES: [&str; 4] = ["ws-server", "grpc-server-1", "grpc-server-2", "grpc-client"];

#[test]
fn every_service_is_there_and_consistent() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    for name in [
        "redis",
        "ws-server",
        "grpc-server-1",
        "grpc-server-2",
        "nginx",
        "envoy",
        "grpc-client",
    ] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    for (name, service) in services {
        assert!(
            service.get("container_name").is_none(),
            "{name:?} has a container_name: it could not scale"
        );
    }
    let s = |name: &str| &compose["services"][name];

    // One image, built from this repository, rtchat as its entrypoint.
    let dockerfile = read("deploy/Dockerfile");
    assert!(dockerfile.contains(r#"ENTRYPOINT ["rtchat"]"#));
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("USER ") && !l.contains("root")),
        "runs as non-root"
    );
    assert!(
        dockerfile.contains("HEALTHCHECK") && !dockerfile.contains("curl"),
        "health check needs no curl"
    );
    for name in RTCHAT_SERVICES {
        assert_eq!(s(name)["image"], "rtchat:latest", "{name}");
        let mut args = vec!["rtchat".to_owned()];
        args.extend(strings(&s(name)["command"]));
        if let Err(err) = rtchat::config::Cli::try_parse_from(&args) {
            panic!("{name}'s command {args:?} is not an rtchat command line: {err}");
        }
    }
    let build = &s("ws-server")["build"];
    assert_eq!(build["context"], "..");
    assert!(
        Path::new(ROOT)
            .join("deploy")
            .join("..")
            .join(build["dockerfile"].as_str().unwrap())
            .exists()
    );

    // Three chat replicas with distinct ids, scalable: no host ports.
    let ws = s("ws-server");
    assert_eq!(ws["deploy"]["replicas"], 3);
    assert!(ws.get("ports").is_none());
    assert!(
        env(ws, "SERVER_ID").contains("{hostname}"),
        "replicas of one service need distinct ids"
    );
    assert_eq!(env(ws, "LISTEN"), "0.0.0.0:3000");
    let nginx_conf = read("deploy/nginx/nginx.conf");
    assert!(
        nginx_conf.contains("ws-server:3000"),
        "nginx points at the ws-server service and port"
    );
    assert!(
        nginx_conf.contains("resolver 127.0.0.11"),
        "nginx re-resolves Docker's DNS"
    );

    // gRPC replicas, as Envoy knows them.
    let envoy_conf = read("deploy/envoy/envoy.yaml");
    for name in ["grpc-server-1", "grpc-server-2"] {
        assert_eq!(env(s(name), "LISTEN"), "0.0.0.0:50051");
        assert!(
            envoy_conf.contains(&format!("address: {name}, port_value: 50051")),
            "Envoy routes to {name}"
        );
        assert!(s(name).get("ports").is_none());
    }
    for name in ["ws-server", "grpc-server-1", "grpc-server-2"] {
        assert_eq!(env(s(name), "REDIS_URL"), "redis://redis:6379");
        assert_eq!(
            s(name)["depends_on"]["redis"]["condition"],
            "service_healthy"
        );
        let grace = seconds(s(name)["stop_grace_period"].as_str().unwrap());
        assert!(
            grace > seconds(env(s(name), "SHUTDOWN_TIMEOUT")),
            "{name} is killed before it can drain"
        );
    }

    // Health checks run the image's own probe, on the port it listens on.
    assert_eq!(
        strings(&ws["healthcheck"]["test"]),
        ["CMD", "rtchat", "probe", "http://127.0.0.1:3000/readyz"]
    );
    for name in ["grpc-server-1", "grpc-server-2"] {
        assert_eq!(
            strings(&s(name)["healthcheck"]["test"]),
            ["CMD", "rtchat", "probe", "grpc://127.0.0.1:50051"]
        );
    }
    for (name, service) in services {
        if let Some(deps) = service["depends_on"].as_mapping() {
            for (dep, how) in deps {
                if how["condition"] == "service_healthy" {
                    let dep = dep.as_str().unwrap();
                    assert!(
                        s(dep).get("healthcheck").is_some(),
                        "{name:?} waits for {dep}'s health, which has no check"
                    );
                }
            }
        }
    }

    // Front doors and the one-shot client.
    let nginx = s("nginx");
    assert_eq!(strings(&nginx["ports"]), ["80:80"]);
    assert!(
        strings(&nginx["volumes"])
            .contains(&"./nginx/nginx.conf:/etc/nginx/nginx.conf:ro".to_owned())
    );
    assert_eq!(
        nginx["depends_on"]["ws-server"]["condition"],
        "service_healthy"
    );
    let envoy = s("envoy");
    assert_eq!(
        strings(&envoy["ports"]),
        ["9000:9000"],
        "Envoy's admin interface is never published"
    );
    assert!(envoy_conf.contains("port_value: 9000"));
    // The admin interface can quit Envoy: the container's loopback only.
    assert!(
        envoy_conf.contains("socket_address: { address: 127.0.0.1, port_value: 9901 }"),
        "Envoy admin must bind the container's loopback"
    );
    assert!(
        strings(&envoy["volumes"])
            .contains(&"./envoy/envoy.yaml:/etc/envoy/envoy.yaml:ro".to_owned())
    );
    assert_eq!(
        envoy["image"].as_str().unwrap(),
        format!("envoyproxy/envoy:v{}", common::ENVOY_VERSIONS[0]),
        "the pinned Envoy is one the config was validated with"
    );
    let client = s("grpc-client");
    assert_eq!(strings(&client["profiles"]), ["client"]);
    let command = strings(&client["command"]);
    assert!(command.contains(&"http://envoy:9000".to_owned()) && command.last().unwrap() == "demo");

    // Redis keeps its data on a volume.
    let redis = s("redis");
    assert!(
        strings(&redis["command"])
            .windows(2)
            .any(|w| w == ["--appendonly", "yes"])
    );
    assert!(
        strings(&redis["volumes"])
            .iter()
            .any(|v| v.ends_with(":/data"))
    );
    assert!(
        compose["volumes"]
            .as_mapping()
            .unwrap()
            .contains_key("redis-data")
    );
}
