// Package sftpd is the SSH side of sftpgate: it loads host keys, accepts SSH
// connections, checks logins through an Authenticator, and serves the SFTP
// subsystem with request handlers that open every path through an os.Root
// on the directory a Mounter gives for the user, so a session cannot leave
// it. It also enforces session limits and idle timeouts and writes one audit
// event per login and per file operation.
package sftpd
