package sftpd

import (
	"errors"
	"io"
	"os"
	"path"
	"sync"
	"syscall"

	"github.com/pkg/sftp"
)

// dirLister pages through a directory with File.Readdir, which takes each
// entry's attributes with fstatat on the open directory: a directory of
// 100,000 entries is never held in memory at once.
type dirLister struct {
	h    *handlers
	path string

	// mu guards the fields below.
	mu     sync.Mutex
	f      *os.File
	pos    int64 // entries returned so far
	done   bool
	closed bool
}

var (
	_ sftp.ListerAt = (*dirLister)(nil)
	_ io.Closer     = (*dirLister)(nil)
)

func (h *handlers) openDir(p string) (*dirLister, error) {
	if err := h.sess.acquireHandle(); err != nil {
		return nil, h.fail("opendir", p, err)
	}
	f, err := h.root.Open(rootRel(p))
	if err != nil {
		h.sess.releaseHandle()
		return nil, h.fail("opendir", p, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.IsDir() {
		err = syscall.ENOTDIR
	}
	if err != nil {
		f.Close()
		h.sess.releaseHandle()
		return nil, h.fail("opendir", p, err)
	}
	return &dirLister{h: h, path: p, f: f}, nil
}

// ListAt fills buf with the next entries. The request server asks for
// consecutive offsets; any other offset is refused.
func (d *dirLister) ListAt(buf []os.FileInfo, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off != d.pos {
		return 0, toStatus(errOutOfOrder)
	}
	if d.done || len(buf) == 0 {
		if d.done {
			return 0, io.EOF
		}
		return 0, nil
	}
	n, err := d.readdir(buf)
	d.pos += int64(n)
	d.h.sess.touch()
	if errors.Is(err, io.EOF) {
		d.done = true
		return n, io.EOF
	}
	if err != nil {
		return n, d.h.fail("readdir", d.path, err)
	}
	return n, nil
}

// readdir fills buf with the next entries the session's scopes show (all
// of them for an unscoped session). Under scopes it reads on until it has
// one entry or reaches the end: a directory on the way to a scope shows
// only the entries on that way, among possibly many hidden ones.
func (d *dirLister) readdir(buf []os.FileInfo) (int, error) {
	scopes := d.h.sess.conn.scopes
	if !scopes.Scoped() {
		fis, err := d.f.Readdir(len(buf))
		return copy(buf, fis), err
	}
	for {
		fis, err := d.f.Readdir(len(buf))
		n := 0
		for _, fi := range fis {
			if visible(scopes, d.path, fi.Name()) {
				buf[n] = scopedInfo(scopes, path.Join(d.path, fi.Name()), fi)
				n++
			}
		}
		if n > 0 || err != nil || len(fis) == 0 {
			return n, err
		}
	}
}

// Close closes the directory and gives back its handle slot.
func (d *dirLister) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.h.sess.releaseHandle()
	return d.f.Close()
}

// oneEntry is the lister of a stat answer.
type oneEntry struct{ fi os.FileInfo }

var _ sftp.ListerAt = oneEntry{}

// ListAt returns the one entry.
func (o oneEntry) ListAt(buf []os.FileInfo, off int64) (int, error) {
	if off > 0 || len(buf) == 0 {
		return 0, io.EOF
	}
	buf[0] = o.fi
	return 1, nil
}
