//! `ct rebuild <model>`: the read models the CLI knows, each rebuilt by the platform's one
//! procedure ([`ct_platform::readmodel::rebuild`]) with the model's own pipeline, so a rebuild
//! applies exactly the code the live service runs.

use std::{path::Path, time::Duration};

use ct_platform::readmodel::{self, ReadModel, RebuildReport};

/// The registered read models: `(name, what it holds)`.
pub const MODELS: &[(&str, &str)] = &[
    ("projector", "events, runs, systems, type_counts (ct-projector's schema)"),
    ("dlq-items", "dlq_items, dlq_handbacks, dlq_audit (ct-dlq-categoriser's schema)"),
    ("daily-counts", "daily_counts (its own schema; run by ct-projector when daily_counts.enabled)"),
    ("health", "statuses, history and the rule windows (ct-health's schema; ct.events.v1 + ct.clock.v1)"),
    ("runs", "trigger_runs, run_transitions (ct-runner's schema; ct.runs.v1)"),
    ("versions", "deployments, branch_heads, version_history (the projector's versions model; ct.events.v1)"),
    ("digest", "digests and the day counts (ct-digest's schema; ct.events.v1 + ct.clock.v1)"),
];

/// The read model `name`, configured from its service's configuration file (defaults, then
/// `config`, then `CT_` variables).
pub fn model(name: &str, config: Option<&Path>) -> anyhow::Result<Box<dyn ReadModel>> {
    Ok(match name {
        "projector" => Box::new(ct_projector::ProjectorModel(ct_projector::Config::load(config)?)),
        "dlq-items" => Box::new(ct_dlq_categoriser::DlqItemsModel(ct_dlq_categoriser::Config::load(config)?)),
        "versions" => Box::new(ct_projector::versions::VersionsModel::of(ct_projector::Config::load(config)?)),
        "daily-counts" => {
            Box::new(ct_projector::daily_counts::DailyCountsModel::of(ct_projector::Config::load(config)?))
        }
        "health" => Box::new(ct_health::HealthModel(ct_health::Config::load(config)?)),
        "digest" => Box::new(ct_digest::DigestModel(ct_digest::Config::load(config)?)),
        "runs" => Box::new(ct_runner::model::RunsModel(ct_runner::Config::load(config)?)),
        other => anyhow::bail!(
            "unknown read model `{other}`; known: {}",
            MODELS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
        ),
    })
}

/// Rebuilds `model` and, with `swap`, swaps it in when identical.
pub async fn rebuild(model: &dyn ReadModel, swap: bool, timeout: Duration) -> anyhow::Result<RebuildReport> {
    Ok(readmodel::rebuild(model, swap, timeout).await?)
}

/// Builds the empty `model` in its live schema from the whole log (after `ct import`).
pub async fn build_fresh(model: &dyn ReadModel, timeout: Duration) -> anyhow::Result<readmodel::FreshReport> {
    Ok(readmodel::build_fresh(model, timeout).await?)
}

/// Each table's checksum of the live `model` (what a rebuild compares; a restore drill compares
/// them before the wipe and after the import).
pub async fn checksums(model: &dyn ReadModel) -> anyhow::Result<readmodel::Checksums> {
    let mut config = model.postgres().clone();
    config.extra_schemas.clear();
    config.max_connections = 1;
    let pool = ct_platform::postgres::connect(&config).await?;
    Ok(model.checksums(&pool).await?)
}
