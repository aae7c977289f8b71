//go:build !linux

package sftpd

import "net"

// unsentBytes cannot tell on this system.
func unsentBytes(net.Conn) (int, bool) { return 0, false }
