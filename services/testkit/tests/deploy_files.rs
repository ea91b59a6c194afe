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
    ("digest", "digest", "ct-digest"),
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

/// The CT_ variables the chart's templates set on every service themselves (`ct.envData` in
/// `templates/_helpers.tpl`), beside those its values name.
const CHART_SETS: &[&str] = &["CT_PROFILE", "CT_HTTP__LISTEN"];

/// Whether `CT_A__B` names the key `a.b` of a service's defaults.
fn names_a_key(defaults: &toml::Table, variable: &str) -> bool {
    let root = toml::Value::Table(defaults.clone());
    let mut value = &root;
    for part in variable.trim_start_matches("CT_").split("__").map(str::to_lowercase) {
        match value.get(part.as_str()) {
            Some(next) => value = next,
            None => return false,
        }
    }
    variable.starts_with("CT_")
}

/// The Rust sources under a folder, concatenated.
fn sources(dir: &std::path::Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            text += &sources(&path);
        } else if path.extension().is_some_and(|e| e == "rs") {
            text += &std::fs::read_to_string(&path).expect("a source file");
        }
    }
    text
}

/// The Helm chart (`deploy/helm/control-tower`, rendered and schema-checked by `deploy/k8s.sh`)
/// against the same sources as the compose file: its values name compose's services, their
/// default ports, real configuration keys, the compose health checks' paths and the topics file.
#[test]
fn the_helm_chart_matches_the_services_compose_and_the_topics() {
    let values: Value =
        serde_norway::from_str(&read("deploy/helm/control-tower/values.yaml")).expect("values.yaml is YAML");
    let compose = compose();
    let services = values["services"].as_object().expect("services");
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = SERVICES.iter().map(|(name, _, _)| *name).collect();
    names.sort_unstable();
    expected.sort_unstable();
    assert_eq!(names, expected, "the chart runs compose's services");
    let helpers = read("deploy/helm/control-tower/templates/_helpers.tpl");
    for variable in CHART_SETS {
        assert!(helpers.contains(&format!("{variable}:")), "the templates set {variable}");
    }
    let common = values["commonEnv"].as_object().expect("commonEnv");

    for (name, folder, binary) in SERVICES {
        let service = &services[*name];
        let defaults = defaults(folder);
        let listen = defaults["http"]["listen"].as_str().expect("http.listen");
        assert_eq!(service["binary"], *binary, "{name} runs its binary");
        assert_eq!(
            service["port"].as_u64(),
            Some(u64::from(port(listen))),
            "{name}: the container port is the default one"
        );
        let env = service["env"].as_object().unwrap_or_else(|| panic!("{name}: env"));
        let secret_env = service["secretEnv"].as_object().unwrap_or_else(|| panic!("{name}: secretEnv"));
        for (variable, reference) in secret_env {
            let (group, key) = (reference["secret"].as_str().unwrap_or(""), reference["key"].as_str().unwrap_or(""));
            assert!(
                values["secrets"][group].get(key).is_some(),
                "{name}: {variable} names secrets.{group}.{key}, not in values.yaml"
            );
        }
        // Every CT_ variable the chart sets names a key of the service's configuration.
        let set: Vec<&str> = env
            .keys()
            .chain(secret_env.keys())
            .chain(common.keys())
            .map(String::as_str)
            .chain(CHART_SETS.iter().copied())
            .collect();
        for variable in &set {
            assert!(names_a_key(&defaults, variable), "{name}: {variable} names no key of {folder}'s config");
        }
        // ... and every one compose sets (but the health check's URL).
        let compose_env = compose["services"][*name]["environment"].as_object().expect("compose environment");
        for key in compose_env.keys().filter(|k| *k != "CT_HEALTH_URL") {
            assert!(set.contains(&key.as_str()), "{name}: compose sets {key}, the chart does not");
        }
        // Probes: what compose's health check asks; readiness may be /readyz where the service has it.
        let health_url = compose_env["CT_HEALTH_URL"].as_str().expect("CT_HEALTH_URL");
        let health_path = format!("/{}", health_url.splitn(4, '/').nth(3).expect("a path"));
        assert_eq!(
            service["probes"]["liveness"],
            health_path.as_str(),
            "{name}: liveness asks compose's health check path"
        );
        let readiness = service["probes"]["readiness"].as_str().expect("a readiness path");
        assert!(
            readiness == health_path
                || (readiness == "/readyz"
                    && sources(&repo_root().join("services").join(folder).join("src")).contains("route(\"/readyz\"")),
            "{name}: readiness asks {readiness}, which is neither compose's path nor a /readyz the service serves"
        );
    }

    // Topics: deploy/topics.toml's, with its partition counts and configs.
    let file: toml::Table = read("deploy/topics.toml").parse().expect("topics.toml parses");
    let topics = file["topic"].as_array().expect("[[topic]]");
    let chart_topics = values["topics"].as_object().expect("topics");
    assert_eq!(chart_topics.len(), topics.len(), "the chart lists the topics of deploy/topics.toml, no more");
    for topic in topics {
        let name = topic["name"].as_str().expect("name");
        let chart = chart_topics.get(name).unwrap_or_else(|| panic!("the chart has no topic {name}"));
        assert_eq!(chart["partitions"].as_i64(), topic["partitions"].as_integer(), "{name}: partitions");
        let config: std::collections::BTreeMap<&str, &str> = topic
            .get("config")
            .and_then(toml::Value::as_table)
            .map(|c| c.iter().map(|(k, v)| (k.as_str(), v.as_str().expect("a string"))).collect())
            .unwrap_or_default();
        let chart_config: std::collections::BTreeMap<&str, &str> = chart["config"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: config"))
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().expect("a string")))
            .collect();
        assert_eq!(chart_config, config, "{name}: config");
    }
    // A consumer's replicas are capped by the partitions of a topic its configuration reads.
    for (name, folder, _) in SERVICES {
        if let Some(topic) = services[*name]["scaleTopic"].as_str() {
            assert!(chart_topics.contains_key(topic), "{name} scales on {topic}, which is no topic");
            let config = read(&format!("services/{folder}/config.default.toml"));
            assert!(config.contains(&format!("\"{topic}\"")), "{name} scales on {topic}, which it does not read");
        }
    }
}
