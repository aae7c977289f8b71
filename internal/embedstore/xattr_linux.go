package embedstore

import "golang.org/x/sys/unix"

func setxattr(path, name string, value []byte) error {
	return unix.Setxattr(path, name, value, 0)
}
