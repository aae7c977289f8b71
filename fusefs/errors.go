package fusefs

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"syscall"

	"github.com/sftpgate/sftpgate/fusefs/objstore"
)

// Sentinel errors of the package. Core code wraps them as "op: %w"; the
// FUSE edge maps them to errno values with errno.
var (
	// ErrNotEmpty is returned when removing or replacing a non-empty directory.
	ErrNotEmpty = errors.New("fusefs: directory not empty")
	// ErrNotFound is returned for a name or key that does not exist.
	ErrNotFound = errors.New("fusefs: not found")
	// ErrExists is returned when a name already exists.
	ErrExists = errors.New("fusefs: already exists")
	// ErrReadOnly is returned for any change in a read-only workspace or view.
	ErrReadOnly = errors.New("fusefs: read-only")
	// ErrNoSpace is returned when the cache directory is short of space.
	ErrNoSpace = errors.New("fusefs: no space left in the cache directory")
	// ErrInvalidName is returned for a name that cannot be an object key segment.
	ErrInvalidName = errors.New("fusefs: invalid name")
	// ErrNameTooLong is returned for a name over 255 bytes or a key over 1024.
	ErrNameTooLong = errors.New("fusefs: name too long")
	// ErrNotSupported is returned for operations objects cannot represent.
	ErrNotSupported = errors.New("fusefs: operation not supported")
	// ErrPermission is returned for operations refused on principle (chown, links).
	ErrPermission = errors.New("fusefs: operation not permitted")
	// ErrIsDir is returned when a file operation targets a directory.
	ErrIsDir = errors.New("fusefs: is a directory")
	// ErrNotDir is returned when a directory operation targets a file.
	ErrNotDir = errors.New("fusefs: not a directory")
	// ErrRevoked is returned for operations in a workspace no longer granted.
	ErrRevoked = errors.New("fusefs: workspace access revoked")
	// ErrInvalidUser is returned by Acquire for a user name that cannot be a directory name.
	ErrInvalidUser = errors.New("fusefs: invalid user name")
	// ErrInvalidOptions is returned by NewManager for missing or bad options.
	ErrInvalidOptions = errors.New("fusefs: invalid options")
	// ErrClosed is returned after Shutdown.
	ErrClosed = errors.New("fusefs: manager shut down")
	// ErrConflict is returned when an object changed under a local copy.
	ErrConflict = errors.New("fusefs: object changed in the store")
	// ErrTooLarge is returned for a file the store refuses for its size.
	ErrTooLarge = errors.New("fusefs: file too large")
	// ErrTooManyCopies is returned when a user has too many files being
	// written or waiting as interrupted uploads (Options.MaxUserCopies).
	ErrTooManyCopies = errors.New("fusefs: too many files being written")
	// ErrCopyQuota is returned when a write would take the copies a user has
	// being written past Options.MaxUserCopyBytes.
	ErrCopyQuota = errors.New("fusefs: too much data being written by one user")
	// ErrQuota is returned when a write or an upload would take a user
	// past their quota (Options.Quotas).
	ErrQuota = errors.New("fusefs: quota exceeded")
	// ErrBusy is returned by Unmount while the view is held.
	ErrBusy = errors.New("fusefs: view in use")
	// ErrNotMounted is returned by Unmount when there is no such view.
	ErrNotMounted = errors.New("fusefs: view not mounted")
	// ErrStagedRemote is returned for a read below the staged size of a
	// resumed staged upload: those bytes are parts of an unfinished
	// upload in the store, never downloaded (EREMOTE).
	ErrStagedRemote = errors.New("fusefs: bytes staged in the store, not readable before the upload completes")
)

// errno maps an error of this package, of the object store or of the OS
// to the errno returned to the kernel. It is the only place doing so;
// unknown errors become EIO. The answers to the kernel go through the
// view's errno, which also logs the causes of EIO.
func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	e, _ := mapErr(err)
	return e
}

// errno is errno for an answer of the view to the kernel: an unknown
// error, mapped to EIO, is logged with its cause to the manager's logger.
func (v *view) errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	e, ok := mapErr(err)
	if !ok {
		v.errLog.Error("unexpected error mapped to EIO", "err", err)
	}
	return e
}

// errno is the view's errno (it logs the causes of EIO).
func (d *dirNode) errno(err error) syscall.Errno { return d.ws.v.errno(err) }

// errno is the view's errno (it logs the causes of EIO).
func (h *dirHandle) errno(err error) syscall.Errno { return h.d.ws.v.errno(err) }

// errno is the view's errno (it logs the causes of EIO).
func (f *fileNode) errno(err error) syscall.Errno { return f.ws.v.errno(err) }

// errno is the view's errno (it logs the causes of EIO).
func (h *fileHandle) errno(err error) syscall.Errno { return h.v.errno(err) }

// errno is the view's errno (it logs the causes of EIO).
func (r *rootNode) errno(err error) syscall.Errno { return r.v.errno(err) }

// mapErr is errno without the logging; ok is false for unknown errors.
func mapErr(err error) (syscall.Errno, bool) {
	var en syscall.Errno
	switch {
	case errors.Is(err, ErrNotEmpty):
		return syscall.ENOTEMPTY, true
	case errors.Is(err, ErrStagedRemote):
		return syscall.EREMOTE, true
	case errors.Is(err, ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT, true
	case errors.Is(err, ErrExists):
		return syscall.EEXIST, true
	case errors.Is(err, ErrReadOnly):
		return syscall.EROFS, true
	case errors.Is(err, ErrNoSpace):
		return syscall.ENOSPC, true
	case errors.Is(err, ErrInvalidName):
		return syscall.EINVAL, true
	case errors.Is(err, ErrNameTooLong):
		return syscall.ENAMETOOLONG, true
	case errors.Is(err, ErrNotSupported):
		return syscall.ENOTSUP, true
	case errors.Is(err, ErrPermission):
		return syscall.EPERM, true
	case errors.Is(err, ErrIsDir):
		return syscall.EISDIR, true
	case errors.Is(err, ErrNotDir):
		return syscall.ENOTDIR, true
	case errors.Is(err, ErrRevoked):
		return syscall.EACCES, true
	case errors.Is(err, ErrTooLarge):
		return syscall.EFBIG, true
	case errors.Is(err, ErrTooManyCopies):
		return syscall.EMFILE, true
	case errors.Is(err, ErrCopyQuota), errors.Is(err, ErrQuota):
		return syscall.EDQUOT, true
	case errors.Is(err, ErrBusy):
		return syscall.EBUSY, true
	case errors.Is(err, context.Canceled):
		return syscall.EINTR, true
	case errors.Is(err, context.DeadlineExceeded):
		return syscall.ETIMEDOUT, true
	case errors.As(err, &en):
		return en, true
	}
	switch serr := objstore.Classify(err); {
	case errors.Is(serr, objstore.ErrNotFound):
		return syscall.ENOENT, true
	case errors.Is(serr, objstore.ErrAccessDenied):
		return syscall.EACCES, true
	case errors.Is(serr, objstore.ErrSlowDown):
		return syscall.EAGAIN, true
	case errors.Is(serr, objstore.ErrTooLarge):
		return syscall.EFBIG, true
	case errors.Is(serr, objstore.ErrKeyTooLong):
		return syscall.ENAMETOOLONG, true
	case errors.Is(serr, objstore.ErrInvalidName):
		return syscall.EINVAL, true
	case errors.Is(serr, objstore.ErrPreconditionFailed):
		return syscall.ESTALE, true
	case errors.Is(serr, objstore.ErrStorageFull):
		return syscall.ENOSPC, true
	case errors.Is(serr, objstore.ErrBucketExists):
		return syscall.EEXIST, true
	}
	var pe *os.PathError
	if errors.As(err, &pe) && errors.As(pe.Err, &en) {
		return en, true
	}
	return syscall.EIO, false
}

// isNotFound reports whether err says the key or bucket does not exist.
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	e, _ := mapErr(err)
	return e == syscall.ENOENT
}
