//! The container files cannot be run here (no Docker engine), so they are checked as text:
//! `docker-compose.kafka.yml` against the Compose specification's JSON schema
//! (`testdata/compose/compose-spec.json`, from the compose-spec repository), and both it and
//! `deploy/Dockerfile` against what the services and `deploy/stack.sh` actually use: ports,
//! `CT_` variables, binaries, the topics file, the health checks.

use ct_testkit::repo_root;
use serde_json::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn compose() -> Value {
    serde_norway::from_str(&read("docker-compose.kafka.yml")).expect("the compose file is YAML")
}

/// Compose service → the service folder whose `config.default.toml` it runs.
const SERVICES: &[(&str, &str, &str)] = &[
    ("registry", "registry", "ct-registry"),
    ("edge", "edge", "ct-edge"),
    ("projector", "projector", "ct-projector"),
    ("dlq-categoriser", "dlq-categoriser", "ct-dlq-categoriser"),
    ("health", "health", "ct-health"),
    ("runner", "runner", "ct-runner"),
    ("target", "target", "ct-target"),
    ("api", "api", "ct-api"),
];

fn defaults(folder: &str) -> toml::Table {
    read(&format!("services/{folder}/config.default.toml")).parse().expect("config.default.toml parses")
}

fn port(address: &str) -> u16 {
    address.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {address}"))
}

#[test]
fn the_compose_file_follows_the_compose_specification() {
    let schema: Value = serde_json::from_str(&read("testdata/compose/compose-spec.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the Compose schema compiles");
    let file = compose();
    let errors: Vec<String> = validator.iter_errors(&file).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "docker-compose.kafka.yml breaks the Compose specification:\n{}", errors.join("\n"));
    // The schema accepts anything under an unknown key of a service; a typo must still fail.
    let mut typo = file.clone();
    typo["services"]["edge"]["depends_onn"] = Value::Bool(true);
    assert!(!validator.is_valid(&typo), "the schema catches an unknown service key");
}

#[test]
fn the_compose_file_matches_the_services_and_the_stack_script() {
    let file = compose();
    let services = file["services"].as_object().expect("services");
    let dockerfile = read("deploy/Dockerfile");
    for (name, folder, binary) in SERVICES {
        let service = services.get(*name).unwrap_or_else(|| panic!("compose has no `{name}`"));
        let defaults = defaults(folder);
        let listen = defaults["http"]["listen"].as_str().expect("http.listen");
        let environment = service["environment"].as_object().unwrap_or_else(|| panic!("{name}: environment"));
        let env = |key: &str| environment.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("{name}: {key}"));
        assert_eq!(port(env("CT_HTTP__LISTEN")), port(listen), "{name}: the container listens on the default port");
        assert_eq!(
            port(env("CT_HEALTH_URL").split('/').nth(2).expect("host:port")),
            port(listen),
            "{name}: the health check asks its own port"
        );
        let published: Vec<String> = match (*name, &service["ports"]) {
            ("target", _) => services["runner"]["ports"].as_array().unwrap().iter().map(|p| p.to_string()).collect(),
            (_, Value::Array(ports)) => ports.iter().map(|p| p.to_string()).collect(),
            _ => panic!("{name}: no ports"),
        };
        let expected = format!("127.0.0.1:{0}:{0}", port(listen));
        assert!(published.iter().any(|p| p.contains(&expected)), "{name}: {expected} is published: {published:?}");
        // Every CT_ variable names a key of the service's configuration.
        for key in environment.keys().filter(|k| k.starts_with("CT_") && *k != "CT_HEALTH_URL") {
            let path: Vec<String> = key["CT_".len()..].split("__").map(str::to_lowercase).collect();
            let mut table = &toml::Value::Table(defaults.clone());
            for part in &path {
                table = table.get(part).unwrap_or_else(|| panic!("{name}: {key} names no key of {folder}'s config"));
            }
        }
        assert_eq!(service["command"][0], *binary, "{name} runs its binary");
        assert!(
            dockerfile.contains(&format!("target/release/{binary} "))
                || dockerfile.contains(&format!("target/release/{binary}\n")),
            "the image holds {binary}"
        );
    }

    // Infrastructure ports: the stack script's defaults.
    let stack = read("deploy/stack.sh");
    for (service, variable) in [("kafka", "KAFKA_PORT"), ("postgres", "PG_PORT"), ("redis", "REDIS_PORT")] {
        let line = stack.lines().find(|l| l.starts_with(&format!("{variable}="))).expect("a port default");
        let default = line.rsplit(":-").next().unwrap().trim_end_matches("}\"");
        let expected = format!("127.0.0.1:{default}:{default}");
        assert!(services[service]["ports"].to_string().contains(&expected), "{service} publishes {expected}");
    }
    // Topics: the image carries deploy/topics.toml and the topics job creates them from it.
    assert!(dockerfile.contains("COPY deploy/topics.toml /etc/control-tower/topics.toml"));
    assert_eq!(
        services["topics"]["command"],
        serde_json::json!(["ct-admin", "ensure-topics", "--file", "/etc/control-tower/topics.toml"])
    );
    // Every service that needs topics waits for them (directly, or through the registry).
    let waits_for = |name: &str, other: &str| services[name]["depends_on"].get(other).is_some();
    assert!(waits_for("registry", "topics"));
    for (name, _, _) in SERVICES.iter().filter(|(n, _, _)| !["registry", "target"].contains(n)) {
        assert!(waits_for(name, "registry"), "{name} waits for the registry (and so for the topics)");
    }
    assert!(dockerfile.contains("USER 10001") && dockerfile.contains("HEALTHCHECK"), "non-root, with a health check");
}
