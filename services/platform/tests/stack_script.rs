//! `deploy/stack.sh` fails fast with one line naming the problem instead of hanging.
//! Each case uses a state folder of its own, so the running stack is not touched.

use std::{net::TcpListener, path::PathBuf, process::Command};

use ct_testkit::repo_root;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn kafka_lib() -> PathBuf {
    let state = std::env::var_os("CT_STATE_DIR").map_or_else(|| repo_root().join(".state"), PathBuf::from);
    state.join("kafka-lib")
}

/// Runs `stack.sh up` with `env`; returns (success, stderr lines starting with `stack: error:`).
fn stack_up(state: &std::path::Path, env: &[(&str, String)]) -> (bool, Vec<String>) {
    let output = Command::new("bash")
        .arg(repo_root().join("deploy/stack.sh"))
        .arg("up")
        .env("CT_STATE_DIR", state)
        .env("CT_KAFKA_LIB_DIR", kafka_lib())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run stack.sh");
    let errors = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.starts_with("stack: error:"))
        .map(str::to_owned)
        .collect();
    (output.status.success(), errors)
}

#[test]
fn a_port_taken_by_something_else_is_named() {
    let state = std::env::temp_dir().join(format!("ct-stack-port-{}", std::process::id()));
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let (ok, errors) = stack_up(&state, &[("CT_KAFKA_PORT", port.to_string())]);
    assert!(!ok);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(&format!("port {port} is taken")) && errors[0].contains("not a Kafka broker"),
        "{errors:?}"
    );
    let _ = std::fs::remove_dir_all(state);
}

#[test]
fn a_broker_that_does_not_come_up_in_time_is_stopped_and_reported() {
    let state = std::env::temp_dir().join(format!("ct-stack-timeout-{}", std::process::id()));
    let (kafka, controller) = (free_port(), free_port());
    let (ok, errors) = stack_up(
        &state,
        &[
            ("CT_KAFKA_PORT", kafka.to_string()),
            ("CT_KAFKA_CONTROLLER_PORT", controller.to_string()),
            ("CT_KAFKA_START_TIMEOUT", "0".to_owned()),
        ],
    );
    assert!(!ok);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("did not come up") && errors[0].contains("within 0s"), "{errors:?}");
    let pid = std::fs::read_to_string(state.join("kafka/kafka.pid")).ok();
    assert!(pid.is_none(), "the half-started broker must be stopped");
    let _ = std::fs::remove_dir_all(state);
}
