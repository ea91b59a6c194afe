-- The `versions` read model (schema <projector schema>_versions): what each repo has deployed per
-- environment, where its branches stand, and whether (and since when) a deployment drifts from
-- the target branch. From ci.deploy.completed and ci.branch.updated only.

-- Event ids applied (one event, one effect).
CREATE TABLE seen (
    event_id TEXT PRIMARY KEY
);

-- The latest deployment per repo and environment (by the events' ts).
CREATE TABLE deployments (
    repo        TEXT NOT NULL,
    environment TEXT NOT NULL,
    commit      TEXT NOT NULL,
    tag         TEXT,
    deployed_at TIMESTAMPTZ NOT NULL,
    -- The branch a deployment should follow (`versions.target_branch` when it was applied).
    target_branch TEXT NOT NULL,
    -- The target branch's head differs from the deployed commit since this time (NULL: in step).
    drift_since TIMESTAMPTZ,
    PRIMARY KEY (repo, environment)
);

-- The latest head per repo and branch (by the events' ts).
CREATE TABLE branch_heads (
    repo       TEXT NOT NULL,
    branch     TEXT NOT NULL,
    commit     TEXT NOT NULL,
    ahead      BIGINT,
    behind     BIGINT,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (repo, branch)
);

-- Every deployment and branch update, for GET /versions/{repo}/history.
CREATE TABLE version_history (
    event_id    TEXT PRIMARY KEY,
    repo        TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('deploy', 'branch')),
    -- The environment of a deploy, the branch of a branch update.
    target      TEXT NOT NULL,
    commit      TEXT NOT NULL,
    tag         TEXT,
    ahead       BIGINT,
    behind      BIGINT
);
CREATE INDEX version_history_repo ON version_history (repo, at DESC, event_id DESC);
