// Package auth owns sftpgate's identities: users, workspaces, the grants
// between them, personal access tokens, users' SSH public keys and login
// methods, and the login checks that the SSH layer calls, together with
// the failed-login limiter.
//
// Everything is kept in one SQLite file (pure Go driver, WAL mode; Open)
// so that the admin CLI and a running daemon can use it at the same time,
// or in a PostgreSQL database shared by several nodes (pgx; OpenPostgres),
// with the same schema and migrations behind one code path. The login
// check reads the store on every call, so a token revoked, a key removed
// or a user deleted by another process is refused at the very next login.
// The limiter is in memory with SQLite and in the database with
// PostgreSQL, so that every node counts every node's failures.
package auth
