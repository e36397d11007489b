//! deploy/kubernetes: every overlay renders with `kubectl kustomize`, its
//! objects pass the strict schemas of the oldest and newest Kubernetes
//! versions supported (kubernetes-validate, offline) and a static policy
//! check (checkov) with no finding left, and the ws-server Deployment keeps
//! the drain's contract: a rolling update never reaches SIGKILL, and no
//! secret is a plain value.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const OVERLAYS: [&str; 2] = ["dev", "production"];
/// The oldest and newest Kubernetes versions supported (README there).
const VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

fn tool(name: &str) -> String {
    format!("{ROOT}/target/tools/{name}")
}

/// Runs `command` (bounded by `timeout`), and its output if it succeeded.
fn run(command: &mut Command) -> Result<String, String> {
    let output = command.output().expect("the command starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(text)
    }
}

/// The overlay rendered, written to a file for the checkers, and its
/// objects.
fn render(overlay: &str, dir: &Path) -> (std::path::PathBuf, Vec<Value>) {
    let yaml = run(Command::new("timeout").args([
        "60",
        "kubectl",
        "kustomize",
        &format!("{ROOT}/deploy/kubernetes/overlays/{overlay}"),
    ]))
    .unwrap_or_else(|e| panic!("{overlay} does not render: {e}"));
    let file = dir.join(format!("{overlay}.yaml"));
    std::fs::write(&file, &yaml).unwrap();
    let objects = serde_norway::Deserializer::from_str(&yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect();
    (file, objects)
}

fn validate(file: &Path, version: &str) -> Result<String, String> {
    run(Command::new("timeout")
        .args(["120", "python3", "-m", "kubernetes_validate", "--strict"])
        .args(["--quiet", "-k", version])
        .arg(file)
        .env("PYTHONPATH", tool("kubernetes-validate")))
}

/// A directory of this test's own (tests of one process run at once).
fn scratch(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rtchat-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_overlay_renders_and_passes_the_schemas_of_each_version() {
    let dir = scratch("schemas");
    // The checker can fail: an unknown field is refused in strict mode.
    let wrong = dir.join("wrong.yaml");
    std::fs::write(
        &wrong,
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80}], sessionAfinity: None}\n",
    )
    .unwrap();
    assert!(validate(&wrong, VERSIONS[0]).is_err(), "a typo is caught");
    for overlay in OVERLAYS {
        let (file, objects) = render(overlay, &dir);
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        for kind in [
            "Namespace",
            "Deployment",
            "Service",
            "Ingress",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "ConfigMap",
        ] {
            assert!(kinds.contains(&kind), "{overlay} has no {kind}: {kinds:?}");
        }
        for version in VERSIONS {
            if let Err(e) = validate(&file, version) {
                panic!("{overlay} against Kubernetes {version}:\n{e}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn every_overlay_passes_the_policy_check_with_reasons_for_what_it_skips() {
    let dir = scratch("policy");
    for overlay in OVERLAYS {
        let (file, objects) = render(overlay, &dir);
        let report = run(Command::new("timeout")
            .args(["300", &format!("{}/bin/checkov", tool("checkov"))])
            .args(["--framework", "kubernetes", "--compact", "--quiet"])
            .args(["--output", "json", "-f"])
            .arg(&file)
            .env("PYTHONPATH", tool("checkov"))
            // No download of check descriptions: the run stays offline.
            .env("BC_SKIP_MAPPING", "TRUE"));
        // checkov exits 1 when something failed; its JSON says what.
        let report: Value = serde_json::from_str(report.as_ref().unwrap_or_else(|e| e))
            .unwrap_or_else(|_| panic!("checkov's report on {overlay}: {report:?}"));
        assert_eq!(
            report["summary"]["failed"], 0,
            "{overlay}: {:#}",
            report["results"]["failed_checks"]
        );
        assert!(report["summary"]["passed"].as_u64().unwrap() > 100);
        // Every suppression names its check and gives a reason.
        for object in &objects {
            let Some(notes) = object["metadata"]["annotations"].as_object() else {
                continue;
            };
            for (key, value) in notes
                .iter()
                .filter(|(k, _)| k.starts_with("checkov.io/skip"))
            {
                let (check, reason) = value.as_str().unwrap().split_once('=').unwrap_or_default();
                assert!(
                    check.starts_with("CKV") && reason.len() > 10,
                    "{overlay}: {key} has no reason: {value}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A duration of the drain's env (`5s`), in seconds.
fn seconds(env: &[Value], name: &str) -> u64 {
    let value = env
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("{name} is set"));
    value.strip_suffix('s').unwrap().parse().unwrap()
}

#[test]
fn a_rolling_update_fits_the_drain_and_no_secret_is_a_plain_value() {
    let dir = scratch("contract");
    for overlay in OVERLAYS {
        let (_, objects) = render(overlay, &dir);
        let deployment = objects
            .iter()
            .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "ws-server")
            .expect("a ws-server Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let env = container["env"].as_array().unwrap();
        let drain = seconds(env, "DRAIN_DELAY") + seconds(env, "DRAIN_DURATION");
        let hard = seconds(env, "SHUTDOWN_TIMEOUT");
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            drain <= hard && hard < grace,
            "{overlay}: drain {drain} s, timeout {hard} s, grace {grace} s"
        );
        let rolling = &deployment["spec"]["strategy"]["rollingUpdate"];
        assert_eq!(
            rolling["maxUnavailable"], 0,
            "{overlay}: no pod taken early"
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"], "/readyz",
            "{overlay}"
        );
        assert_ne!(
            container["image"].as_str().unwrap().rsplit(':').next(),
            Some("latest")
        );
        // Secrets reach the servers as files or from a Secret, never as a
        // value written here.
        for object in objects.iter().filter(|o| o["kind"] == "Deployment") {
            for container in object["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
            {
                for var in container["env"].as_array().into_iter().flatten() {
                    let name = var["name"].as_str().unwrap();
                    let plain = var.get("value").is_some();
                    let secret = ["SECRET", "KEY", "TOKEN", "REDIS_URL"]
                        .iter()
                        .any(|s| name.contains(s) && !name.ends_with("_FILE"));
                    assert!(
                        !(plain && secret && overlay == "production"),
                        "{overlay}: {name} is a plain value"
                    );
                    assert!(
                        var.get("valueFrom")
                            .is_none_or(|v| v.get("secretKeyRef").is_none()),
                        "{overlay}: {name} is a secret in the environment, not a file"
                    );
                }
            }
        }
        assert!(
            objects.iter().all(|o| o["kind"] != "Secret"),
            "{overlay}: no Secret is shipped in the manifests"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
