-- Version drift (the drift alert): each repository's deployments per environment and its branch
-- heads, from ci.deploy.completed and ci.branch.updated facts folded at ticks, the latest by ts.
-- A deployment drifts while the target branch's head is another commit; drift_since is the later
-- ts of the two that first made them differ, kept while they keep differing.

ALTER TABLE pending_facts
    ADD COLUMN version_kind TEXT,               -- deploy | head
    ADD COLUMN repo TEXT,
    ADD COLUMN scope TEXT,                      -- the environment, or the branch
    ADD COLUMN commit_sha TEXT;

CREATE TABLE deployments (
    repo            TEXT NOT NULL,
    environment     TEXT NOT NULL,
    system_id       TEXT NOT NULL,              -- the catalogued system of the reporting source
    deployed_commit TEXT NOT NULL,
    deployed_at     TIMESTAMPTZ NOT NULL,
    head_commit     TEXT,
    head_at         TIMESTAMPTZ,
    drift_since     TIMESTAMPTZ,
    PRIMARY KEY (repo, environment)
);

CREATE TABLE branch_heads (
    repo       TEXT NOT NULL,
    branch     TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (repo, branch)
);
