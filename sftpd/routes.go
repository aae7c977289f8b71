package sftpd

import (
	"fmt"
	"io"

	"github.com/pkg/sftp"
)

// Every SFTP request that names a file reaches its handler through serve,
// which runs the prologue they all share. The request server sees only
// sftpServer, whose methods are routes through serve: a handler has no
// other way in, so none can skip the prologue (and serve stale data by
// forgetting to flush the session's gathered writes).

// request is an SFTP request past the prologue.
type request struct {
	*sftp.Request
	path   string // the session path of Filepath, checked for the route's need
	target string // the session path of Target (rename)
}

// route says what the prologue does for one kind of request.
type route struct {
	op       string // the operation's name in log lines
	need     need   // what the request does to its path, for allow
	activity string // shown in Sessions as "<activity> <path>" once allowed; "" shows nothing new
}

// serve runs the prologue, then run:
//   - a panic in either fails the request (logged) and the session goes on;
//   - Filepath (and Target) become session paths, checked by allow (by
//     allowRename for needRename) before any file is touched;
//   - the route's activity is shown in Sessions;
//   - the session's gathered writes are flushed, so that run sees
//     everything the client wrote.
func serve[T any](h *handlers, r *sftp.Request, rt route, run func(*request) (T, error)) (_ T, err error) {
	defer h.recoverOp(rt.op, &err)
	rq := &request{Request: r, path: sessionPath(r.Filepath)}
	var zero T
	if rt.need == needRename {
		rq.target = sessionPath(r.Target)
		err = h.allowRename(rq.path, rq.target)
	} else {
		err = h.allow(rq.path, rt.need)
	}
	if err != nil {
		return zero, h.fail(rt.op, rq.path, err)
	}
	if rt.activity != "" {
		h.sess.setOp(rt.activity + " " + rq.path)
	}
	h.pending.flush()
	return run(rq)
}

// serveCmd is serve for the requests that answer only a status.
func serveCmd(h *handlers, r *sftp.Request, rt route, run func(*request) error) error {
	_, err := serve(h, r, rt, func(rq *request) (struct{}, error) { return struct{}{}, run(rq) })
	return err
}

// unsupported is the handler of the requests that are refused once their
// path has passed the checks (links).
func unsupported(*request) error { return sftp.ErrSSHFxOpUnsupported }

// recoverOp turns a panic in a handler into a failure for the client.
func (h *handlers) recoverOp(op string, errp *error) {
	if v := recover(); v != nil {
		h.sess.log.Error("sftp handler panic", "op", op, "panic", fmt.Sprint(v))
		*errp = failure("internal error")
	}
}

// sftpServer is what the request server calls: the table of routes.
type sftpServer struct{ h *handlers }

var (
	_ sftp.FileReader           = sftpServer{}
	_ sftp.OpenFileWriter       = sftpServer{}
	_ sftp.FileCmder            = sftpServer{}
	_ sftp.PosixRenameFileCmder = sftpServer{}
	_ sftp.StatVFSFileCmder     = sftpServer{}
	_ sftp.FileLister           = sftpServer{}
	_ sftp.LstatFileLister      = sftpServer{}
	_ sftp.RealPathFileLister   = sftpServer{}
	_ sftp.ReadlinkFileLister   = sftpServer{}
)

// sftpHandlers returns the request server's handler set for h.
func (h *handlers) sftpHandlers() sftp.Handlers {
	s := sftpServer{h}
	return sftp.Handlers{FileGet: s, FilePut: s, FileCmd: s, FileList: s}
}

// Fileread opens a file for reading.
func (s sftpServer) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	f, err := serve(s.h, r, route{op: "open", need: needRead, activity: "download"}, s.h.openRead)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Filewrite opens a file for writing (create, truncate, exclusive and
// append as the client asks).
func (s sftpServer) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	f, err := serve(s.h, r, route{op: "open", need: needWrite, activity: "upload"}, s.h.openWriteOnly)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// OpenFile opens a file for reading and writing on one handle.
func (s sftpServer) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	f, err := serve(s.h, r, route{op: "open", need: needWrite, activity: "upload"}, s.h.openReadWrite)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Filecmd runs setstat, rename, rmdir, mkdir and remove; links are refused.
func (s sftpServer) Filecmd(r *sftp.Request) error {
	h := s.h
	switch r.Method {
	case "Setstat":
		return serveCmd(h, r, route{op: r.Method, need: needWrite, activity: "setstat"}, h.setstat)
	case "Rename":
		return serveCmd(h, r, route{op: "rename", need: needRename, activity: "rename"}, h.renameNoReplace)
	case "Rmdir":
		return serveCmd(h, r, route{op: r.Method, need: needWrite, activity: "rmdir"}, h.rmdir)
	case "Mkdir":
		return serveCmd(h, r, route{op: r.Method, need: needWrite, activity: "mkdir"}, h.mkdir)
	case "Remove":
		return serveCmd(h, r, route{op: r.Method, need: needWrite, activity: "delete"}, h.remove)
	}
	// Link, Symlink and any other command change their path: the checks
	// still come first, so a hidden path stays hidden.
	return serveCmd(h, r, route{op: r.Method, need: needWrite}, unsupported)
}

// PosixRename renames, replacing the target if it exists.
func (s sftpServer) PosixRename(r *sftp.Request) error {
	return serveCmd(s.h, r, route{op: "rename", need: needRename, activity: "rename"}, s.h.renameReplace)
}

// StatVFS answers statvfs@openssh.com.
func (s sftpServer) StatVFS(r *sftp.Request) (*sftp.StatVFS, error) {
	return serve(s.h, r, route{op: "statvfs", need: needStat}, s.h.statVFS)
}

// Filelist serves opendir (a paged lister) and stat (one entry).
func (s sftpServer) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	h := s.h
	switch r.Method {
	case "List":
		d, err := serve(h, r, route{op: r.Method, need: needStat, activity: "list"}, h.list)
		if err != nil {
			return nil, err
		}
		return d, nil
	case "Stat":
		return serve(h, r, route{op: r.Method, need: needStat}, h.stat)
	}
	// Readlink and anything else: refused once the path is checked.
	return serve(h, r, route{op: r.Method, need: needStat}, func(*request) (sftp.ListerAt, error) {
		return nil, sftp.ErrSSHFxOpUnsupported
	})
}

// Lstat stats a path without following a final symlink.
func (s sftpServer) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	return serve(s.h, r, route{op: "lstat", need: needStat}, s.h.lstat)
}

// RealPath returns the cleaned absolute form of p; ".." stops at "/". It
// touches no file, so it needs no prologue.
func (s sftpServer) RealPath(p string) (string, error) {
	p = sessionPath(p)
	if err := checkPath(p); err != nil {
		return "", s.h.fail("realpath", p, err)
	}
	return p, nil
}

// Readlink is refused: links are not supported.
func (s sftpServer) Readlink(string) (string, error) {
	return "", sftp.ErrSSHFxOpUnsupported
}
