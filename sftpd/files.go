package sftpd

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"

	"github.com/sftpgate/sftpgate/internal/fsapi"
)

// file is an open SFTP handle: it counts bytes, maps errors, writes the
// upload/download audit event and returns the file's Close error (where the
// mount reports a failed upload) as the close status.
type file struct {
	f          *os.File
	h          *handlers
	path       string // session path, for audit
	read       bool
	write      bool
	appendMode bool
	base       int64 // size when opened, in append mode
	opened     time.Time
	comb       *combiner // gathers writes; nil on a read-only handle

	up, down atomic.Int64

	// amu guards amode and, in "at end" append mode, makes each
	// stat-then-write atomic for this handle. It is private to sftpd, so
	// holding it across a call into the mount cannot deadlock the mount.
	amu   sync.Mutex
	amode appendMode

	// transferErr is set when the session ended with the handle open.
	transferErr atomic.Pointer[error]

	closeOnce sync.Once
	closeErr  error
}

// closeFile closes an open file; a seam so tests can make close fail the
// way an upload failure on the mount does. It stays a package variable:
// nothing but a test of this package assigns it (before its server
// starts), and as a Server field it would put a test hook in every
// server for a test that needs it in one.
var closeFile = (*os.File).Close

// appendMode says where writes on a handle opened with the append flag go.
type appendMode int

const (
	appendUndecided appendMode = iota
	appendAbsolute             // at the offsets given (OpenSSH reput)
	appendAtEnd                // at the current end (offsets counted from 0)
)

var (
	_ sftp.WriterAtReaderAt = (*file)(nil)
	_ io.Closer             = (*file)(nil)
	_ sftp.TransferError    = (*file)(nil)
)

// ReadAt reads at off; io.EOF is passed through unchanged.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, failure("negative offset")
	}
	if !f.read {
		// Opened read-write under a write-only scope: see openWrite.
		return 0, errScopeDenied
	}
	f.h.pending.flush()
	n, err := f.f.ReadAt(p, off)
	f.down.Add(int64(n))
	f.h.sess.bytesDown.Add(int64(n))
	f.h.sess.touch()
	if err != nil && err != io.EOF {
		return n, f.h.fail("read", f.path, err)
	}
	return n, err
}

// WriteAt writes at off. With the append flag, a handle whose first write
// is at or past the size it had when opened keeps the offsets it is given
// (a client that knows the size, like OpenSSH reput); a handle whose first
// write is below that size writes every block at the current end.
func (f *file) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, failure("negative offset")
	}
	// Refused before the file is touched: its size stays as it was.
	limit := f.h.maxFileSize()
	if off > limit-int64(len(p)) {
		return 0, f.h.fail("write", f.path, f.h.tooLarge())
	}
	if f.appendMode {
		f.amu.Lock()
		if f.amode == appendUndecided {
			f.amode = appendAbsolute
			if off < f.base {
				f.amode = appendAtEnd
			}
		}
		if f.amode == appendAtEnd {
			defer f.amu.Unlock()
			// The end is after what the session's handles have gathered.
			f.h.pending.flush()
			fi, err := f.f.Stat()
			if err != nil {
				return 0, f.h.fail("write", f.path, err)
			}
			if fi.Size() > limit-int64(len(p)) {
				return 0, f.h.fail("write", f.path, f.h.tooLarge())
			}
			return f.wrote(f.f.WriteAt(p, fi.Size()))
		}
		f.amu.Unlock()
	}
	if f.comb == nil {
		return f.wrote(f.f.WriteAt(p, off))
	}
	if err := f.comb.write(p, off); err != nil {
		return f.wrote(0, err)
	}
	return f.wrote(len(p), nil)
}

// wrote counts n bytes written and maps err for the client.
func (f *file) wrote(n int, err error) (int, error) {
	f.up.Add(int64(n))
	f.h.sess.bytesUp.Add(int64(n))
	f.h.sess.touch()
	if err != nil {
		return n, f.h.fail("write", f.path, err)
	}
	return n, nil
}

// TransferError records that the session ended while the handle was open.
func (f *file) TransferError(err error) {
	f.transferErr.Store(&err)
}

// Close closes the file once and returns its error, mapped: for a file on
// the mount this is where an upload failure shows.
func (f *file) Close() error {
	f.closeOnce.Do(func() {
		f.h.sess.busy.Add(1)
		defer f.h.sess.busy.Add(-1)
		var ferr error
		if f.comb != nil {
			ferr = f.comb.flush()
			f.h.pending.unregister(f.comb)
		}
		if f.write && (f.transferErr.Load() != nil || ferr != nil) {
			// Data the client sent is missing: keep the file as an
			// interrupted upload rather than publish it.
			f.markInterrupted()
		}
		err := closeFile(f.f)
		f.h.sess.releaseHandle()
		if ferr != nil {
			err = ferr
		}
		f.h.sess.touch()
		f.audit(err)
		f.closeErr = f.h.fail("close", f.path, err)
	})
	return f.closeErr
}

// markInterrupted tells the file system that this handle's writer went
// away without closing (see fsapi.InterruptIoctl): its close publishes
// nothing.
func (f *file) markInterrupted() {
	if err := fsapi.Interrupt(f.f); err != nil && !fsapi.IsUnsupported(err) {
		f.h.sess.log.Warn("cannot mark interrupted upload", "path", f.path, "err", err)
	}
}

func (f *file) audit(err error) {
	var extra []any
	if err != nil {
		extra = append(extra, "err", err)
	}
	if te := f.transferErr.Load(); te != nil {
		extra = append(extra, "interrupted", (*te).Error())
	}
	log := f.h.sess.log
	if f.write {
		args := append([]any{"path", f.path, "bytes", f.up.Load(), "duration", time.Since(f.opened)}, extra...)
		log.Info("upload", args...)
	}
	if f.read && (!f.write || f.down.Load() > 0) {
		args := append([]any{"path", f.path, "bytes", f.down.Load()}, extra...)
		log.Info("download", args...)
	}
}
