package sftpd

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"
)

// advertiseExtensions makes pkg/sftp advertise only the extensions that
// work here (its default also advertises hardlink@openssh.com, which is
// refused). The list is process-wide in pkg/sftp and read by every
// session, so New sets it once per process: setting it per Server would
// race with the sessions of another Server.
var advertiseExtensions = sync.OnceValue(func() error {
	return sftp.SetSFTPExtensions("posix-rename@openssh.com", "statvfs@openssh.com")
})

// handlers serves one SFTP session's requests. Every path goes through
// root, so nothing outside the session's directory can be reached.
type handlers struct {
	root    *os.Root
	sess    *session
	pending pendingWrites // the open handles' gathered writes
}

var (
	_ sftp.FileReader           = (*handlers)(nil)
	_ sftp.OpenFileWriter       = (*handlers)(nil)
	_ sftp.FileCmder            = (*handlers)(nil)
	_ sftp.PosixRenameFileCmder = (*handlers)(nil)
	_ sftp.StatVFSFileCmder     = (*handlers)(nil)
	_ sftp.FileLister           = (*handlers)(nil)
	_ sftp.LstatFileLister      = (*handlers)(nil)
	_ sftp.RealPathFileLister   = (*handlers)(nil)
	_ sftp.ReadlinkFileLister   = (*handlers)(nil)
)

// sftpHandlers returns the request server's handler set for h.
func (h *handlers) sftpHandlers() sftp.Handlers {
	return sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h}
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

// recoverOp turns a panic in a handler into a failure for the client.
func (h *handlers) recoverOp(op string, errp *error) {
	if v := recover(); v != nil {
		h.sess.log.Error("sftp handler panic", "op", op, "panic", fmt.Sprint(v))
		*errp = failure("internal error")
	}
}

// Fileread opens a file for reading.
func (h *handlers) Fileread(r *sftp.Request) (_ io.ReaderAt, err error) {
	defer h.recoverOp("read", &err)
	h.pending.flush()
	p := sessionPath(r.Filepath)
	if err := h.allow(p, needRead); err != nil {
		return nil, h.fail("open", p, err)
	}
	h.sess.setOp("download " + p)
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

// Filewrite opens a file for writing (create, truncate, exclusive and
// append as the client asks).
func (h *handlers) Filewrite(r *sftp.Request) (_ io.WriterAt, err error) {
	defer h.recoverOp("write", &err)
	return h.openWrite(r, false)
}

// OpenFile opens a file for reading and writing on one handle.
func (h *handlers) OpenFile(r *sftp.Request) (_ sftp.WriterAtReaderAt, err error) {
	defer h.recoverOp("open", &err)
	return h.openWrite(r, true)
}

func (h *handlers) openWrite(r *sftp.Request, read bool) (*file, error) {
	p := sessionPath(r.Filepath)
	if err := h.allow(p, needWrite); err != nil {
		return nil, h.fail("open", p, err)
	}
	if read && checkScope(h.sess.conn.scopes, p, needReadWrite) != nil {
		// A write-only scope: clients open read-write to upload (pkg/sftp
		// Create does); the handle is opened write-only and refuses reads.
		read = false
	}
	h.sess.setOp("upload " + p)
	h.pending.flush()
	pf := r.Pflags()
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

// Filecmd runs setstat, rename, rmdir, mkdir, remove, link and symlink.
func (h *handlers) Filecmd(r *sftp.Request) (err error) {
	defer h.recoverOp(r.Method, &err)
	p := sessionPath(r.Filepath)
	if err := checkPath(p); err != nil {
		return h.fail(r.Method, p, err)
	}
	if r.Method != "Rename" {
		// Every other command changes p (rename checks both of its names).
		if err := h.allow(p, needWrite); err != nil {
			return h.fail(r.Method, p, err)
		}
	}
	h.pending.flush()
	switch r.Method {
	case "Setstat":
		h.sess.setOp("setstat " + p)
		return h.setstat(r, p)
	case "Rename":
		return h.rename(p, sessionPath(r.Target), false)
	case "Rmdir":
		return h.rmdir(p)
	case "Mkdir":
		h.sess.setOp("mkdir " + p)
		err := h.root.Mkdir(rootRel(p), 0o755)
		h.audit("mkdir", err, "path", p)
		return h.fail("mkdir", p, err)
	case "Remove":
		return h.remove(p)
	case "Link", "Symlink":
		return sftp.ErrSSHFxOpUnsupported
	}
	return sftp.ErrSSHFxOpUnsupported
}

// PosixRename renames, replacing the target if it exists.
func (h *handlers) PosixRename(r *sftp.Request) (err error) {
	defer h.recoverOp("posix-rename", &err)
	h.pending.flush()
	return h.rename(sessionPath(r.Filepath), sessionPath(r.Target), true)
}

func (h *handlers) rename(from, to string, replace bool) error {
	if err := h.allowRename(from, to); err != nil {
		return h.fail("rename", from, err)
	}
	h.sess.setOp("rename " + from)
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

func (h *handlers) rmdir(p string) error {
	h.sess.setOp("rmdir " + p)
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

func (h *handlers) remove(p string) error {
	h.sess.setOp("delete " + p)
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
func (h *handlers) setstat(r *sftp.Request, p string) error {
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

// Filelist serves opendir (a paged lister) and stat (one entry).
func (h *handlers) Filelist(r *sftp.Request) (_ sftp.ListerAt, err error) {
	defer h.recoverOp(r.Method, &err)
	p := sessionPath(r.Filepath)
	if err := h.allow(p, needStat); err != nil {
		return nil, h.fail(r.Method, p, err)
	}
	h.pending.flush()
	switch r.Method {
	case "List":
		h.sess.setOp("list " + p)
		return h.openDir(p)
	case "Stat":
		fi, err := h.root.Stat(rootRel(p))
		if err != nil {
			return nil, h.fail("stat", p, err)
		}
		return oneEntry{scopedInfo(h.sess.conn.scopes, p, fi)}, nil
	case "Readlink":
		return nil, sftp.ErrSSHFxOpUnsupported
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// Lstat stats a path without following a final symlink.
func (h *handlers) Lstat(r *sftp.Request) (_ sftp.ListerAt, err error) {
	defer h.recoverOp("lstat", &err)
	h.pending.flush()
	p := sessionPath(r.Filepath)
	if err := h.allow(p, needStat); err != nil {
		return nil, h.fail("lstat", p, err)
	}
	fi, err := h.root.Lstat(rootRel(p))
	if err != nil {
		return nil, h.fail("lstat", p, err)
	}
	return oneEntry{scopedInfo(h.sess.conn.scopes, p, fi)}, nil
}

// RealPath returns the cleaned absolute form of p; ".." stops at "/".
func (h *handlers) RealPath(p string) (string, error) {
	p = sessionPath(p)
	if err := checkPath(p); err != nil {
		return "", h.fail("realpath", p, err)
	}
	return p, nil
}

// Readlink is refused: links are not supported.
func (h *handlers) Readlink(string) (string, error) {
	return "", sftp.ErrSSHFxOpUnsupported
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
