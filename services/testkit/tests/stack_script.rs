//! `deploy/stack.sh` fails fast with one line naming the problem instead of hanging.
//! Each case uses a state folder of its own, so the running stack is not touched. The Kafka cases
//! first make sure the shared stack is up: `up` starts Postgres and Redis before Kafka, and in a
//! throwaway folder it would leave servers running on the shared ports.

use std::{net::TcpListener, process::Command, sync::Once};

use ct_testkit::{kafka_lib_dir, repo_root, stack};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Once per test binary: the cases run in parallel and two `up`s must not race.
fn shared_stack_up() {
    static UP: Once = Once::new();
    UP.call_once(|| stack(&["up"]));
}

/// Runs `stack.sh up` with `env`; returns (success, stderr lines starting with `stack: error:`).
fn stack_up(state: &std::path::Path, env: &[(&str, String)]) -> (bool, Vec<String>) {
    let output = Command::new("bash")
        .arg(repo_root().join("deploy/stack.sh"))
        .arg("up")
        .env("CT_STATE_DIR", state)
        .env("CT_KAFKA_LIB_DIR", kafka_lib_dir())
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
    shared_stack_up();
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
    shared_stack_up();
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

/// A folder put first on `PATH`: a `java` that reports version 11, an `apt-get` that exits with
/// `apt_status` without installing anything, and a `sudo` that runs its command as is (so the
/// fake `apt-get` is the one found whoever runs the test).
fn old_java_path(dir: &std::path::Path, apt_status: u8) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).unwrap();
    let scripts = [
        ("java", "#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n".to_owned()),
        ("apt-get", format!("#!/bin/sh\nexit {apt_status}\n")),
        ("sudo", "#!/bin/sh\nexec \"$@\"\n".to_owned()),
    ];
    for (name, body) in scripts {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default())
}

#[test]
fn a_java_that_cannot_be_installed_is_named() {
    let state = std::env::temp_dir().join(format!("ct-stack-java-apt-{}", std::process::id()));
    let path = old_java_path(&state.join("bin"), 100);
    let (ok, errors) = stack_up(&state, &[("PATH", path)]);
    assert!(!ok);
    assert_eq!(errors, ["stack: error: apt-get update failed; cannot install: openjdk-17-jre-headless"]);
    let _ = std::fs::remove_dir_all(state);
}

#[test]
fn a_java_older_than_17_is_named_with_its_version() {
    let state = std::env::temp_dir().join(format!("ct-stack-java-old-{}", std::process::id()));
    let path = old_java_path(&state.join("bin"), 0);
    let (ok, errors) = stack_up(&state, &[("PATH", path)]);
    assert!(!ok);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("Java 17+ is required for Kafka 4") && errors[0].contains("\"11.0.22\""), "{errors:?}");
    assert!(!state.join("kafka/kafka.pid").exists(), "nothing may start without Java");
    let _ = std::fs::remove_dir_all(state);
}

#[test]
fn a_redis_older_than_7_already_answering_is_named() {
    use std::os::unix::fs::PermissionsExt as _;
    let state = std::env::temp_dir().join(format!("ct-stack-redis-old-{}", std::process::id()));
    let bin = state.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // A `redis-cli` that answers like a Redis 6.2 server.
    let fake = bin.join("redis-cli");
    let script = "#!/bin/sh\ncase \"$*\" in *PING*) echo PONG ;; *INFO*) printf '# Server\\r\\nredis_version:6.2.14\\r\\n' ;; esac\n";
    std::fs::write(&fake, script).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let (ok, errors) = stack_up(&state, &[("PATH", path)]);
    assert!(!ok);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("version 6.2.14") && errors[0].contains("needs 7.0+"), "{errors:?}");
    let _ = std::fs::remove_dir_all(state);
}
