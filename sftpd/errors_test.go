package sftpd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
)

func TestToStatus(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	_, escape := root.Open("../x")
	if escape == nil {
		t.Fatal("os.Root let ../x through")
	}
	pathErr := func(errno syscall.Errno) error { return &fs.PathError{Op: "open", Path: "ws/a", Err: errno} }
	tests := []struct {
		name string
		err  error
		code error
		msg  string
	}{
		{"not exist", os.ErrNotExist, sftp.ErrSSHFxNoSuchFile, "no such file"},
		{"ENOENT path", pathErr(syscall.ENOENT), sftp.ErrSSHFxNoSuchFile, "no such file"},
		{"wrapped ENOENT", fmt.Errorf("stat: %w", pathErr(syscall.ENOENT)), sftp.ErrSSHFxNoSuchFile, "no such file"},
		{"EACCES", pathErr(syscall.EACCES), sftp.ErrSSHFxPermissionDenied, "permission denied"},
		{"EPERM", syscall.EPERM, sftp.ErrSSHFxPermissionDenied, "permission denied"},
		{"EROFS", pathErr(syscall.EROFS), sftp.ErrSSHFxPermissionDenied, "read-only file system"},
		{"os.Root escape", escape, sftp.ErrSSHFxPermissionDenied, "path escapes from the session root"},
		{"ENOTSUP", pathErr(syscall.ENOTSUP), sftp.ErrSSHFxOpUnsupported, "operation unsupported"},
		{"EOPNOTSUPP", syscall.EOPNOTSUPP, sftp.ErrSSHFxOpUnsupported, "operation unsupported"},
		{"ENOSYS", syscall.ENOSYS, sftp.ErrSSHFxOpUnsupported, "operation unsupported"},
		{"errors.ErrUnsupported", fmt.Errorf("x: %w", errors.ErrUnsupported), sftp.ErrSSHFxOpUnsupported, "operation unsupported"},
		{"ENOTEMPTY", pathErr(syscall.ENOTEMPTY), sftp.ErrSSHFxFailure, "directory not empty"},
		{"ENOSPC", pathErr(syscall.ENOSPC), sftp.ErrSSHFxFailure, "no space left on device"},
		{"EDQUOT", syscall.EDQUOT, sftp.ErrSSHFxFailure, "quota exceeded"},
		{"EIO from close", &fs.PathError{Op: "close", Path: "ws/a", Err: syscall.EIO}, sftp.ErrSSHFxFailure, "input/output error"},
		{"EEXIST", pathErr(syscall.EEXIST), sftp.ErrSSHFxFailure, "file already exists"},
		{"fs.ErrExist", fs.ErrExist, sftp.ErrSSHFxFailure, "file already exists"},
		{"rename onto existing", fmt.Errorf("rename: %w", errExists), sftp.ErrSSHFxFailure, "file already exists"},
		{"EISDIR", pathErr(syscall.EISDIR), sftp.ErrSSHFxFailure, "is a directory"},
		{"ENOTDIR", pathErr(syscall.ENOTDIR), sftp.ErrSSHFxFailure, "not a directory"},
		{"bad attrs", errBadAttrs, sftp.ErrSSHFxBadMessage, "malformed attributes"},
		{"status kept", sftp.ErrSSHFxOpUnsupported, sftp.ErrSSHFxOpUnsupported, "operation unsupported"},
		{"wrapped status", fmt.Errorf("op: %w", sftp.ErrSSHFxPermissionDenied), sftp.ErrSSHFxPermissionDenied, "permission denied"},
		{"unknown", errors.New("something odd at /srv/mnt/alice"), sftp.ErrSSHFxFailure, "failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toStatus(tt.err)
			if code := sftpCode(got); code != tt.code {
				t.Errorf("got code %v, want %v", code, tt.code)
			}
			if got.Error() != tt.msg {
				t.Errorf("got message %q, want %q", got.Error(), tt.msg)
			}
		})
	}
	if got := toStatus(nil); got != nil {
		t.Errorf("nil: got %v, want nil", got)
	}
	if got := toStatus(io.EOF); got != io.EOF {
		t.Errorf("io.EOF: got %v, want io.EOF itself", got)
	}
}
