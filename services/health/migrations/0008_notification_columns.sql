-- The notifier is the platform's now (ct_platform::notify), shared with the digest: its table
-- names what a notification is about `subject` and what happened to it `kind`.
ALTER TABLE notifications RENAME COLUMN alert_id TO subject;
ALTER TABLE notifications RENAME COLUMN transition TO kind;
