package sftpd

import (
	"errors"
	"io"
	"io/fs"
	"syscall"

	"github.com/pkg/sftp"
)

// Sentinel errors of the package.
var (
	// ErrServerClosed is returned by Serve after Shutdown.
	ErrServerClosed = errors.New("sftpd: server closed")
	// ErrNoSession is returned by Kill for an unknown session id.
	ErrNoSession = errors.New("sftpd: no such session")
	// ErrBadConfig is wrapped by New for an unusable Config.
	ErrBadConfig = errors.New("sftpd: bad config")
	// ErrHostKey is wrapped by LoadHostKey for every failure.
	ErrHostKey = errors.New("sftpd: host key")

	// errExists is what a rename onto an existing target returns.
	errExists = errors.New("sftpd: file already exists")
	// errOutOfOrder is returned when a directory is read at an offset that
	// is not where the previous read stopped.
	errOutOfOrder = errors.New("sftpd: directory read out of order")
	// errBadAttrs is returned for a setstat whose attribute block is short.
	errBadAttrs = errors.New("sftpd: malformed attributes")
	// errNameControl is returned for a path holding a control character.
	errNameControl = errors.New("sftpd: file name contains a control character")
	// errNameUTF8 is returned for a path that is not valid UTF-8.
	errNameUTF8 = errors.New("sftpd: file name is not valid UTF-8")
)

// statusError is an SFTP status with a message of our choosing: the
// request server sends Error() as the message and finds the code by
// unwrapping to the sftp fxerr constant.
type statusError struct {
	code error // one of the sftp.ErrSSHFx* constants
	msg  string
	// vague marks a status that does not say what went wrong (an error
	// with no precise status): the handler logs its cause for the operator.
	vague bool
}

// Error returns the message the client receives.
func (e *statusError) Error() string { return e.msg }

// Unwrap returns the SFTP status code, which the request server finds.
func (e *statusError) Unwrap() error { return e.code }

// failure is a failure status with the message msg.
func failure(msg string) error {
	return &statusError{code: sftp.ErrSSHFxFailure, msg: msg}
}

// vagueFailure is a failure status for an error that has no precise one.
func vagueFailure(msg string) error {
	return &statusError{code: sftp.ErrSSHFxFailure, msg: msg, vague: true}
}

// isVague reports whether st, a status of toStatus, tells the client
// nothing precise: a vague statusError or a bare SSH_FX_FAILURE.
func isVague(st error) bool {
	var se *statusError
	if errors.As(st, &se) {
		return se.vague
	}
	return st == sftp.ErrSSHFxFailure
}

// isPathEscape reports whether err is os.Root's "path escapes from parent"
// error. It is the one error recognised by its text: package os does not
// export it (it is errPathEscapes), so neither errors.Is nor errors.As can
// name it.
func isPathEscape(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == "path escapes from parent" {
			return true
		}
	}
	return false
}

// toStatus maps an error from a file operation to the error the SFTP
// client receives. It is the one place where that mapping happens. io.EOF
// is returned unchanged (the request server compares it by identity), an
// error that already carries an SFTP status is kept, and everything else
// becomes the most precise status there is, with a message that names the
// problem but never a host path.
func toStatus(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var se *statusError
	if errors.As(err, &se) {
		return se
	}
	if code := sftpCode(err); code != nil {
		return code
	}
	if isPathEscape(err) {
		return &statusError{code: sftp.ErrSSHFxPermissionDenied, msg: "path escapes from the session root"}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errnoStatus(errno)
	}
	switch {
	case errors.Is(err, errExists), errors.Is(err, fs.ErrExist):
		return failure("file already exists")
	case errors.Is(err, fs.ErrNotExist):
		return sftp.ErrSSHFxNoSuchFile
	case errors.Is(err, fs.ErrPermission):
		return sftp.ErrSSHFxPermissionDenied
	case errors.Is(err, errBadAttrs):
		return &statusError{code: sftp.ErrSSHFxBadMessage, msg: "malformed attributes"}
	case errors.Is(err, errNameControl):
		return failure("file name contains a control character")
	case errors.Is(err, errNameUTF8):
		return failure("file name is not valid UTF-8")
	case errors.Is(err, errOutOfOrder):
		return failure("directory read out of order")
	case errors.Is(err, fs.ErrClosed):
		return failure("file already closed")
	case errors.Is(err, errors.ErrUnsupported):
		return sftp.ErrSSHFxOpUnsupported
	}
	return vagueFailure("failure")
}

// errnoStatus maps a system error number.
func errnoStatus(errno syscall.Errno) error {
	switch errno {
	case syscall.ENOENT:
		return sftp.ErrSSHFxNoSuchFile
	case syscall.EACCES, syscall.EPERM:
		return sftp.ErrSSHFxPermissionDenied
	case syscall.EROFS:
		return &statusError{code: sftp.ErrSSHFxPermissionDenied, msg: "read-only file system"}
	case syscall.ENOTSUP, syscall.ENOSYS:
		// EOPNOTSUPP equals ENOTSUP on Linux.
		return sftp.ErrSSHFxOpUnsupported
	case syscall.EEXIST:
		return failure("file already exists")
	case syscall.ENOTEMPTY:
		return failure("directory not empty")
	case syscall.ENOSPC:
		return failure("no space left on device")
	case syscall.EDQUOT:
		return failure("quota exceeded")
	case syscall.EIO:
		return vagueFailure("input/output error")
	}
	return failure(errno.Error())
}

// sftpCodes are the SFTP status constants an error may already carry.
var sftpCodes = []error{
	sftp.ErrSSHFxNoSuchFile, sftp.ErrSSHFxPermissionDenied, sftp.ErrSSHFxOpUnsupported,
	sftp.ErrSSHFxFailure, sftp.ErrSSHFxEOF, sftp.ErrSSHFxBadMessage,
	sftp.ErrSSHFxNoConnection, sftp.ErrSSHFxConnectionLost,
}

// sftpCode returns the SFTP status constant in err's chain, or nil.
func sftpCode(err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		for _, c := range sftpCodes {
			if e == c {
				return c
			}
		}
	}
	return nil
}
