//! The read API binary under `profile = "production"`: it starts with the user tokens of its own
//! file (its token reads, a dev token does not), refuses a dev token or none at all, the dev
//! session key or a short one, and prints neither its tokens, its session key nor the database
//! password in any log line.

use std::time::Duration;

use ct_testkit::{ServiceProcess, TestContext, free_port, postgres_url};

fn config(ctx: &TestContext, port: u16, password: &str, tokens: &str) -> String {
    // Local Postgres trusts the local user, so any password connects; it must still never print.
    let url = postgres_url().replacen("postgres@", &format!("postgres:{password}@"), 1);
    format!(
        "profile = \"production\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n[postgres]\nurl = \"{url}\"\nschema = \"{schema}\"\n[runs]\nredaction_salt = \"{salt}\"\n[ui]\nsession_key = \"{key}\"\n[auth.user_tokens]\n{tokens}\n",
        schema = ctx.postgres().schema,
        salt = salt(ctx),
        key = session_key(ctx),
    )
}

fn salt(ctx: &TestContext) -> String {
    format!("run-salt-{}", ctx.id)
}

fn session_key(ctx: &TestContext) -> String {
    format!("session-key-of-this-production-test-{}", ctx.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_starts_with_its_own_tokens_refuses_dev_ones_and_never_logs_a_secret() {
    let ctx = TestContext::new();
    let dir = std::env::temp_dir().join(format!("ct-api-production-{}", ctx.id));
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_ct-api"));
    let (token, password) = (format!("prod-user-{}", ctx.id), format!("pg-pw-{}", ctx.id));

    let port = free_port();
    let mut api = ServiceProcess::start(
        binary,
        "api",
        &config(&ctx, port, &password, &format!("\"{token}\" = \"viewer\"")),
        &dir,
    );
    assert!(api.healthy(port, "/healthz", Duration::from_secs(30)).await, "the API did not start:\n{}", api.logs());
    let http = reqwest::Client::new();
    let systems = |token: &str| http.get(format!("http://127.0.0.1:{port}/systems")).bearer_auth(token).send();
    let answer = systems(&token).await.unwrap().status().as_u16();
    assert!(answer == 200 || answer == 503, "its own token is refused: {answer}");
    assert_eq!(systems("dev-token-owner").await.unwrap().status(), 401, "a dev token works in production");
    api.stop();
    let logs = api.logs();
    assert!(
        !logs.contains(&token)
            && !logs.contains(&password)
            && !logs.contains(&salt(&ctx))
            && !logs.contains(&session_key(&ctx)),
        "a secret value was logged:\n{logs}"
    );

    let own = format!("\"{token}\" = \"viewer\"");
    let own_config = |key: &str| config(&ctx, free_port(), &password, &own).replace(&session_key(&ctx), key);
    for (name, file, rule) in [
        ("dev", config(&ctx, free_port(), &password, "\"dev-token-owner\" = \"owner\""), "dev user tokens"),
        ("none", config(&ctx, free_port(), &password, ""), "at least one token"),
        ("dev-key", own_config("dev-session-key-for-the-local-dashboards-only-0123456789"), "ui.session_key"),
        ("short-key", own_config("too-short"), "at least 32 bytes"),
    ] {
        let mut api = ServiceProcess::start(binary, name, &file, &dir);
        assert_eq!(api.exit_code(Duration::from_secs(20)).await, Some(64), "{}", api.logs());
        assert!(api.logs().contains(rule), "{rule}: {}", api.logs());
    }
    let _ = std::fs::remove_dir_all(dir);
}
