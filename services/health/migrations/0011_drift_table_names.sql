-- The read API reads several schemas through one search_path: the versions model already has a
-- `deployments` table, so the evaluator's drift tables get names of their own.
ALTER TABLE deployments RENAME TO drift_deployments;
ALTER TABLE branch_heads RENAME TO drift_branch_heads;
