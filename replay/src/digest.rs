//! `ct digest show|regenerate`: what the digest service decided for a day, and what that day's
//! digest would say now from the same counts (events that arrived after it was decided change the
//! counts, never the decided digest). Reads the digest's schema with `ct-digest`'s configuration.

use anyhow::Context as _;
use chrono::NaiveDate;
use ct_core::digest::{Digest, Rendered};
use serde::Serialize;

/// A decided digest.
#[derive(Debug, Clone, Serialize)]
pub struct Decided {
    pub day: NaiveDate,
    pub sha256: String,
    pub json: String,
    pub markdown: String,
    pub published: bool,
    pub late: Option<bool>,
}

/// The digest of `day` (the latest decided one without it), if decided.
pub async fn show(config: &ct_digest::Config, day: Option<NaiveDate>) -> anyhow::Result<Option<Decided>> {
    let pool = ct_platform::postgres::connect(&config.postgres).await.context("connecting to Postgres")?;
    let row: Option<(NaiveDate, String, String, String, bool, Option<bool>)> = sqlx::query_as(
        "SELECT day, sha256, json, markdown, published_at IS NOT NULL, late FROM digests
         WHERE $1::date IS NULL OR day = $1 ORDER BY day DESC LIMIT 1",
    )
    .bind(day)
    .fetch_optional(&pool)
    .await
    .context("reading the digests (is ct-digest's schema there?)")?;
    Ok(row.map(|(day, sha256, json, markdown, published, late)| Decided {
        day,
        sha256,
        json,
        markdown,
        published,
        late,
    }))
}

/// What regenerating a day gives.
#[derive(Debug, Clone, Serialize)]
pub struct Regenerated {
    pub day: NaiveDate,
    /// The decided digest's SHA-256, if the day was decided.
    pub decided_sha256: Option<String>,
    pub sha256: String,
    /// Differs from the decided digest (events arrived after it was decided).
    pub differs: bool,
    #[serde(skip)]
    pub rendered: Rendered,
}

/// The digest of `day` built now from its counts, compared with the decided one. Nothing is
/// written: a decided digest never changes.
pub async fn regenerate(config: &ct_digest::Config, day: NaiveDate) -> anyhow::Result<Regenerated> {
    config.validate()?;
    let pool = ct_platform::postgres::connect(&config.postgres).await.context("connecting to Postgres")?;
    let mut conn = pool.acquire().await?;
    let counts = ct_digest::builder::digest_counts(&mut conn, day, config.digest.zone()?)
        .await
        .context("reading the day's counts")?;
    let rendered = Digest::build(day, config.digest.zone()?, config.digest.publish_time()?, &counts).render();
    let decided_sha256: Option<String> =
        sqlx::query_scalar("SELECT sha256 FROM digests WHERE day = $1").bind(day).fetch_optional(&mut *conn).await?;
    Ok(Regenerated {
        day,
        differs: decided_sha256.as_deref().is_some_and(|decided| decided != rendered.sha256),
        decided_sha256,
        sha256: rendered.sha256.clone(),
        rendered,
    })
}
