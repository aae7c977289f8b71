package sftpd

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/pkg/sftp"
)

// handlers serves one SFTP session's requests. Every path goes through
// root, so nothing outside the session's directory can be reached. Its
// request handlers are reached only through serve (routes.go).
type handlers struct {
	root    *os.Root
	sess    *session
	pending pendingWrites // the open handles' gathered writes
}

// fail maps err for the client, logging the cause of failures that have no
// precise status.
func (h *handlers) fail(op, p string, err error) error {
	st := toStatus(err)
	if st == nil || st == io.EOF {
		return st
	}
	if isVague(st) {
		// No precise status: keep the cause for the operator.
		h.sess.log.Warn("sftp operation failed", "op", op, "path", p, "err", err)
	} else {
		h.sess.log.Debug("sftp operation refused", "op", op, "path", p, "err", err)
	}
	return st
}

// openRead opens a file for reading.
func (h *handlers) openRead(rq *request) (*file, error) {
	p := rq.path
	if err := h.sess.acquireHandle(); err != nil {
		return nil, h.fail("open", p, err)
	}
	f, err := h.root.Open(rootRel(p))
	if err != nil {
		h.sess.releaseHandle()
		return nil, h.fail("open", p, err)
	}
	return h.newFile(f, p, true, false, false), nil
}

// openWriteOnly opens a file for writing.
func (h *handlers) openWriteOnly(rq *request) (*file, error) { return h.openWrite(rq, false) }

// openReadWrite opens a file for reading and writing.
func (h *handlers) openReadWrite(rq *request) (*file, error) { return h.openWrite(rq, true) }

func (h *handlers) openWrite(rq *request, read bool) (*file, error) {
	p := rq.path
	if read && checkScope(h.sess.conn.scopes, p, needReadWrite) != nil {
		// A write-only scope: clients open read-write to upload (pkg/sftp
		// Create does); the handle is opened write-only and refuses reads.
		read = false
	}
	pf := rq.Pflags()
	// Never O_APPEND: os.File.WriteAt refuses such files, and clients that
	// resume (OpenSSH reput) send absolute offsets with the append flag.
	flag := os.O_WRONLY
	if read {
		flag = os.O_RDWR
	}
	if pf.Creat {
		flag |= os.O_CREATE
		if pf.Excl {
			flag |= os.O_EXCL
		}
	}
	if pf.Trunc {
		flag |= os.O_TRUNC
	}
	if err := h.sess.acquireHandle(); err != nil {
		return nil, h.fail("open", p, err)
	}
	f, err := h.root.OpenFile(rootRel(p), flag, 0o644)
	if err != nil {
		h.sess.releaseHandle()
		return nil, h.fail("open", p, err)
	}
	fl := h.newFile(f, p, read, true, pf.Append)
	if pf.Append {
		fi, err := f.Stat()
		if err != nil {
			h.pending.unregister(fl.comb)
			f.Close()
			h.sess.releaseHandle()
			return nil, h.fail("open", p, err)
		}
		fl.base = fi.Size()
	}
	return fl, nil
}

// mkdir makes a directory.
func (h *handlers) mkdir(rq *request) error {
	err := h.root.Mkdir(rootRel(rq.path), 0o755)
	h.audit("mkdir", err, "path", rq.path)
	return h.fail("mkdir", rq.path, err)
}

// renameNoReplace renames, failing if the target exists.
func (h *handlers) renameNoReplace(rq *request) error { return h.rename(rq.path, rq.target, false) }

// renameReplace renames, replacing the target if it exists.
func (h *handlers) renameReplace(rq *request) error { return h.rename(rq.path, rq.target, true) }

func (h *handlers) rename(from, to string, replace bool) error {
	var err error
	if !replace {
		// SFTP v3 rename must not overwrite (draft-ietf-secsh-filexfer-02 6.5).
		if _, lerr := h.root.Lstat(rootRel(to)); lerr == nil {
			err = fmt.Errorf("rename: %w", errExists)
		}
	}
	if err == nil {
		err = h.root.Rename(rootRel(from), rootRel(to))
	}
	h.audit("rename", err, "path", from, "to", to)
	return h.fail("rename", from, err)
}

// rmdir removes a directory, and only a directory.
func (h *handlers) rmdir(rq *request) error {
	p := rq.path
	fi, err := h.root.Lstat(rootRel(p))
	if err == nil && !fi.IsDir() {
		err = &fs.PathError{Op: "rmdir", Path: p, Err: syscall.ENOTDIR}
	}
	if err == nil {
		err = h.root.Remove(rootRel(p))
	}
	h.audit("rmdir", err, "path", p)
	return h.fail("rmdir", p, err)
}

// remove removes a file, and only a file.
func (h *handlers) remove(rq *request) error {
	p := rq.path
	fi, err := h.root.Lstat(rootRel(p))
	if err == nil && fi.IsDir() {
		err = &fs.PathError{Op: "remove", Path: p, Err: syscall.EISDIR}
	}
	if err == nil {
		err = h.root.Remove(rootRel(p))
	}
	h.audit("delete", err, "path", p)
	return h.fail("remove", p, err)
}

// audit writes one audit event, with the error if the operation failed.
func (h *handlers) audit(event string, err error, args ...any) {
	if err != nil {
		args = append(args, "err", err)
	}
	h.sess.log.Info(event, args...)
}

// setstat applies size, permissions and times. Owner changes are refused
// before anything is changed.
func (h *handlers) setstat(rq *request) error {
	r, p := rq.Request, rq.path
	if err := checkAttrs(r.Flags, r.Attrs); err != nil {
		return h.fail("setstat", p, err)
	}
	af := r.AttrFlags()
	if af.UidGid {
		return &statusError{code: sftp.ErrSSHFxOpUnsupported, msg: "changing owner or group is not supported"}
	}
	a := r.Attributes()
	name := rootRel(p)
	if af.Size {
		if a.Size > uint64(h.maxFileSize()) {
			return h.fail("truncate", p, h.tooLarge())
		}
		if err := h.truncate(name, int64(a.Size)); err != nil {
			return h.fail("truncate", p, err)
		}
	}
	if af.Permissions {
		if err := h.root.Chmod(name, fs.FileMode(a.Mode&0o777)); err != nil {
			return h.fail("chmod", p, err)
		}
	}
	if af.Acmodtime {
		if err := h.root.Chtimes(name, a.AccessTime(), a.ModTime()); err != nil {
			return h.fail("chtimes", p, err)
		}
	}
	return nil
}

// maxFileSize is the largest size a write or truncate may give a file.
func (h *handlers) maxFileSize() int64 { return h.sess.conn.srv.cfg.MaxFileSize }

// tooLarge is the status of a write or truncate past maxFileSize.
func (h *handlers) tooLarge() error {
	return failure(fmt.Sprintf("file too large (maximum file size %d bytes)", h.maxFileSize()))
}

func (h *handlers) truncate(name string, size int64) error {
	f, err := h.root.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	terr := f.Truncate(size)
	cerr := f.Close() // the mount uploads on close: its error matters
	if terr != nil {
		return terr
	}
	return cerr
}

// checkAttrs verifies that the attribute block holds every field its flags
// announce, so that a short packet never applies zeros.
func checkAttrs(flags uint32, b []byte) error {
	need := 0
	af := (&sftp.Request{Flags: flags}).AttrFlags()
	if af.Size {
		need += 8
	}
	if af.UidGid {
		need += 8
	}
	if af.Permissions {
		need += 4
	}
	if af.Acmodtime {
		need += 8
	}
	if len(b) < need {
		return errBadAttrs
	}
	return nil
}

// list opens a directory for a paged listing.
func (h *handlers) list(rq *request) (*dirLister, error) { return h.openDir(rq.path) }

// stat stats a path, following a final symlink.
func (h *handlers) stat(rq *request) (sftp.ListerAt, error) {
	fi, err := h.root.Stat(rootRel(rq.path))
	if err != nil {
		return nil, h.fail("stat", rq.path, err)
	}
	return oneEntry{scopedInfo(h.sess.conn.scopes, rq.path, fi)}, nil
}

// lstat stats a path without following a final symlink.
func (h *handlers) lstat(rq *request) (sftp.ListerAt, error) {
	fi, err := h.root.Lstat(rootRel(rq.path))
	if err != nil {
		return nil, h.fail("lstat", rq.path, err)
	}
	return oneEntry{scopedInfo(h.sess.conn.scopes, rq.path, fi)}, nil
}

// newFile wraps f for the request server.
func (h *handlers) newFile(f *os.File, p string, read, write, appendMode bool) *file {
	fl := &file{f: f, h: h, path: p, read: read, write: write, appendMode: appendMode, opened: time.Now()}
	if write {
		fl.comb = &combiner{dst: f, pending: &h.pending}
		h.pending.register(fl.comb)
	}
	return fl
}
