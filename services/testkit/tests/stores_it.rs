//! The real Postgres and Redis: a pool confined to the test's schema, and prefixed Redis keys.

use ct_platform::{postgres, redis::Keys};
use ct_testkit::TestContext;
use redis::AsyncCommands;

#[tokio::test]
async fn postgres_writes_and_reads_in_its_own_schema() {
    let ctx = TestContext::new();
    let config = ctx.postgres();
    let pool = postgres::connect(&config).await.expect("connect to Postgres");
    sqlx::query("CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)").execute(&pool).await.expect("create");
    sqlx::query("INSERT INTO notes VALUES ($1, $2), ($3, $4)")
        .bind(1_i64)
        .bind("one")
        .bind(2_i64)
        .bind("two")
        .execute(&pool)
        .await
        .expect("insert");
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, body FROM notes ORDER BY id").fetch_all(&pool).await.expect("select");
    assert_eq!(rows, vec![(1, "one".to_owned()), (2, "two".to_owned())]);
    let (schema,): (String,) = sqlx::query_as("SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'notes' AND table_schema = current_schema()")
        .fetch_one(&pool)
        .await
        .expect("schema");
    assert_eq!(schema, config.schema);
    sqlx::query(&format!("DROP SCHEMA \"{}\" CASCADE", config.schema)).execute(&pool).await.expect("cleanup");
}

#[tokio::test]
async fn postgres_refuses_a_schema_name_that_could_inject() {
    let ctx = TestContext::new();
    let mut config = ctx.postgres();
    config.schema = "x\"; DROP TABLE y; --".to_owned();
    assert!(postgres::connect(&config).await.is_err());
}

#[tokio::test]
async fn redis_round_trips_under_the_test_prefix() {
    let ctx = TestContext::new();
    let config = ctx.redis();
    let mut conn = ct_platform::redis::connect(&config).await.expect("connect to Redis");
    let keys = Keys::new(config.key_prefix.clone());
    let key = keys.key(&["system", "portal"]);
    let _: () = conn.hset(&key, "status", "green").await.expect("hset");
    let status: String = conn.hget(&key, "status").await.expect("hget");
    assert_eq!(status, "green");
    assert!(key.starts_with(&format!("t:{}:", ctx.id)));
    let _: () = conn.del(&key).await.expect("del");
}
