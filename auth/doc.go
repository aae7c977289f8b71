// Package auth owns sftpgate's identities: users, workspaces, the grants
// between them, personal access tokens, users' SSH public keys and login
// methods, and the login checks that the SSH layer calls, together with
// the in-memory failed-login limiter.
//
// Everything is kept in one SQLite file (pure Go driver, WAL mode) so that
// the admin CLI and a running daemon can use it at the same time; the login
// check reads the store on every call, so a token revoked, a key removed
// or a user deleted by another process is refused at the very next login.
package auth
