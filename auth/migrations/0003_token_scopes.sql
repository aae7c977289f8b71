-- Token scopes: a scoped token reaches only the listed subtrees, each with
-- its permission. tokens.scoped is set when the token was minted with
-- scopes, so that a scoped token whose scope rows were lost is refused,
-- never widened to the whole of its owner's grants. No foreign key to
-- workspaces: deleting a workspace must not delete a scope (and widen the
-- token); a scope naming a missing workspace simply reaches nothing.

ALTER TABLE tokens ADD COLUMN scoped INTEGER NOT NULL DEFAULT 0;

CREATE TABLE token_scopes (
	token_id  TEXT NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
	workspace TEXT NOT NULL,
	path      TEXT NOT NULL,
	perm      TEXT NOT NULL CHECK (perm IN ('r', 'w', 'rw')),
	PRIMARY KEY (token_id, workspace, path)
) STRICT;
