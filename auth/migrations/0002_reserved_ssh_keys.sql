-- Version 2 belongs to the SSH-keys branch (authorized keys). This file
-- only keeps the versions of the scopes branch contiguous; it is replaced
-- by that branch's 0002 when both are merged.
SELECT 1;
