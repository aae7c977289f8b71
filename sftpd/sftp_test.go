package sftpd

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// sshFx codes as the client sees them.
const (
	fxNoSuchFile       = 2
	fxPermissionDenied = 3
	fxFailure          = 4
	fxOpUnsupported    = 8
)

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	ts := startServer(t, nil)
	cl := ts.sftp(t)
	root := ts.root(t)
	for _, size := range []int{0, 1, 1000, 3<<20 + 12345} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := randomBytes(t, size)
			name := fmt.Sprintf("/file-%d.bin", size)
			f, err := cl.Create(name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			onDisk, err := os.ReadFile(filepath.Join(root, name))
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(onDisk) != sha256.Sum256(data) {
				t.Fatalf("uploaded file: got %d bytes with another hash, want %d", len(onDisk), size)
			}
			r, err := cl.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			var back bytes.Buffer
			if _, err := r.WriteTo(&back); err != nil {
				t.Fatal(err)
			}
			r.Close()
			if sha256.Sum256(back.Bytes()) != sha256.Sum256(data) {
				t.Fatalf("downloaded file: got %d bytes with another hash, want %d", back.Len(), size)
			}
			fi, err := cl.Stat(name)
			if err != nil || fi.Size() != int64(size) {
				t.Errorf("stat: got %v, %v, want size %d", fi, err, size)
			}
		})
	}
	logs := ts.log.String()
	if !strings.Contains(logs, "msg=upload") || !strings.Contains(logs, "msg=download") || !strings.Contains(logs, "bytes=3158073") {
		t.Errorf("upload/download audit events missing from %q", logs)
	}
	var up, down int64
	for _, si := range ts.srv.Sessions() {
		up += si.BytesUp
		down += si.BytesDown
	}
	if want := int64(3<<20 + 12345 + 1001); up != want || down != want {
		t.Errorf("session bytes: got up %d down %d, want %d each", up, down, want)
	}
}

func TestConcurrentWriteAt(t *testing.T) {
	ts := startServer(t, nil)
	cl := ts.sftp(t)
	const block, blocks = 32 << 10, 64
	data := randomBytes(t, block*blocks)
	f, err := cl.OpenFile("/scattered", os.O_RDWR|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	// Each of 4 goroutines writes every 4th block, last block first.
	var wg sync.WaitGroup
	errs := make(chan error, blocks)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := blocks - 1 - g; i >= 0; i -= 4 {
				if _, err := f.WriteAt(data[i*block:(i+1)*block], int64(i*block)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("WriteAt: %v", err)
	}
	// Read back on the same handle, concurrently.
	got := make([]byte, len(data))
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < blocks; i += 4 {
				if _, err := f.ReadAt(got[i*block:(i+1)*block], int64(i*block)); err != nil && err != io.EOF {
					t.Errorf("ReadAt: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("read back on the same handle: bytes differ")
	}
	onDisk, err := os.ReadFile(filepath.Join(ts.root(t), "scattered"))
	if err != nil || !bytes.Equal(onDisk, data) {
		t.Errorf("on disk: got %d bytes (err %v), want the %d written", len(onDisk), err, len(data))
	}
}

func TestAppendAndResume(t *testing.T) {
	ts := startServer(t, nil)
	cl := ts.sftp(t)
	root := ts.root(t)
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	check := func(name, want string) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}

	t.Run("append flag, offsets from zero", func(t *testing.T) {
		write("a", "hello ")
		f, err := cl.OpenFile("/a", os.O_WRONLY|os.O_APPEND)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"wor", "ld"} {
			if _, err := f.Write([]byte(s)); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		check("a", "hello world")
	})
	t.Run("append flag, absolute offsets (reput)", func(t *testing.T) {
		write("b", "0123456789")
		f, err := cl.OpenFile("/b", os.O_WRONLY|os.O_APPEND)
		if err != nil {
			t.Fatal(err)
		}
		// Out of order, as a pipelining client may send them.
		if _, err := f.WriteAt([]byte("EF"), 14); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("ABCD"), 10); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		check("b", "0123456789ABCDEF")
	})
	t.Run("winscp resume, no append no truncate", func(t *testing.T) {
		write("c", "partial-")
		fi, err := cl.Stat("/c")
		if err != nil {
			t.Fatal(err)
		}
		f, err := cl.OpenFile("/c", os.O_WRONLY)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("complete"), fi.Size()); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		check("c", "partial-complete")
	})
	t.Run("truncate flag", func(t *testing.T) {
		write("d", "old content that is long")
		f, err := cl.OpenFile("/d", os.O_WRONLY|os.O_TRUNC)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("new"))
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		check("d", "new")
	})
	t.Run("exclusive create", func(t *testing.T) {
		write("e", "x")
		_, err := cl.OpenFile("/e", os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err == nil || !strings.Contains(err.Error(), "file already exists") {
			t.Errorf("got %v, want file already exists", err)
		}
		f, err := cl.OpenFile("/e2", os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		check("e2", "")
	})
	t.Run("open missing without create", func(t *testing.T) {
		_, err := cl.OpenFile("/missing", os.O_WRONLY)
		if got := statusCode(err); got != fxNoSuchFile {
			t.Errorf("got %v (code %d), want no such file", err, got)
		}
	})
}

func TestSetstat(t *testing.T) {
	ts := startServer(t, nil)
	cl := ts.sftp(t)
	root := ts.root(t)
	if err := os.WriteFile(filepath.Join(root, "f"), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cl.Truncate("/f", 4); err != nil {
		t.Fatalf("truncate: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "f")); string(got) != "0123" {
		t.Errorf("after truncate: got %q, want %q", got, "0123")
	}
	mtime := time.Date(2020, 5, 17, 10, 30, 0, 0, time.UTC)
	if err := cl.Chtimes("/f", mtime, mtime); err != nil {
		t.Fatalf("chtimes: %v", err)
	}
	fi, err := os.Stat(filepath.Join(root, "f"))
	if err != nil || !fi.ModTime().Equal(mtime) {
		t.Errorf("mtime: got %v (%v), want %v", fi.ModTime(), err, mtime)
	}
	if err := cl.Chmod("/f", 0o600); err != nil {
		t.Fatalf("chmod: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(root, "f")); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode: got %v, want 0600", fi.Mode().Perm())
	}
	err = cl.Chown("/f", 1234, 1234)
	if got := statusCode(err); got != fxOpUnsupported {
		t.Errorf("chown: got %v (code %d), want op unsupported", err, got)
	}
	// fsetstat on an open handle.
	f, err := cl.OpenFile("/f", os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(2); err != nil {
		t.Errorf("ftruncate: %v", err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 2 {
		t.Errorf("fstat: got %v, %v, want size 2", fi, err)
	}
	f.Close()
	if err := cl.Truncate("/missing", 0); statusCode(err) != fxNoSuchFile {
		t.Errorf("truncate missing: got %v, want no such file", err)
	}
}

func TestCheckAttrs(t *testing.T) {
	tests := []struct {
		name  string
		flags uint32
		n     int
		ok    bool
	}{
		{"nothing", 0, 0, true},
		{"size", 1, 8, true},
		{"size short", 1, 7, false},
		{"size and times", 1 | 8, 16, true},
		{"size and times short", 1 | 8, 12, false},
		{"all", 1 | 2 | 4 | 8, 28, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkAttrs(tt.flags, make([]byte, tt.n))
			if got := err == nil; got != tt.ok {
				t.Errorf("got %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestRenameRemoveMkdir(t *testing.T) {
	ts := startServer(t, nil)
	cl := ts.sftp(t)
	root := ts.root(t)
	put := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("a", "A")
	put("b", "B")

	err := cl.Rename("/a", "/b")
	if got := statusCode(err); got != fxFailure || !strings.Contains(err.Error(), "file already exists") {
		t.Errorf("v3 rename onto existing: got %v, want failure: file already exists", err)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "b")); string(got) != "B" {
		t.Errorf("target changed by a refused rename: %q", got)
	}
	if err := cl.PosixRename("/a", "/b"); err != nil {
		t.Fatalf("posix-rename: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "b")); string(got) != "A" {
		t.Errorf("after posix-rename: got %q, want %q", got, "A")
	}
	if err := cl.Rename("/b", "/c"); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "c")); err != nil {
		t.Errorf("renamed file: %v", err)
	}

	if err := cl.Mkdir("/dir"); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	if err := cl.Mkdir("/dir"); statusCode(err) != fxFailure {
		t.Errorf("mkdir existing: got %v, want failure", err)
	}
	put("dir/inner", "x")
	err = cl.RemoveDirectory("/dir")
	if statusCode(err) != fxFailure || !strings.Contains(err.Error(), "directory not empty") {
		t.Errorf("rmdir non-empty: got %v, want failure: directory not empty", err)
	}
	if err := cl.RemoveDirectory("/c"); statusCode(err) != fxFailure {
		t.Errorf("rmdir on a file: got %v, want failure", err)
	}
	if err := cl.Remove("/dir/inner"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if err := cl.RemoveDirectory("/dir"); err != nil {
		t.Fatalf("rmdir: %v", err)
	}
	if err := cl.Remove("/nothing"); statusCode(err) != fxNoSuchFile {
		t.Errorf("remove missing: got %v, want no such file", err)
	}
	logs := ts.log.String()
	for _, ev := range []string{"msg=rename", "msg=mkdir", "msg=rmdir", "msg=delete"} {
		if !strings.Contains(logs, ev) {
			t.Errorf("audit event %s missing", ev)
		}
	}
}

func TestStatVFSAndRealpath(t *testing.T) {
	ts := startServer(t, nil)
	cl := ts.sftp(t)
	st, err := cl.StatVFS("/")
	if err != nil {
		t.Fatalf("statvfs: %v", err)
	}
	if st.Bsize == 0 || st.Blocks == 0 || st.Namemax == 0 {
		t.Errorf("statvfs: got %+v, want sizes filled in", st)
	}
	if _, err := cl.StatVFS("/missing"); statusCode(err) != fxNoSuchFile {
		t.Errorf("statvfs missing: got %v, want no such file", err)
	}
	tests := []struct{ in, want string }{
		{".", "/"},
		{"/", "/"},
		{"..", "/"},
		{"/../..", "/"},
		{"a/b/../c", "/a/c"},
		{"/x//y/", "/x/y"},
	}
	for _, tt := range tests {
		got, err := cl.RealPath(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("realpath %q: got %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestLargeListing(t *testing.T) {
	ts := startServer(t, nil)
	cl := ts.sftp(t)
	dir := filepath.Join(ts.root(t), "big")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 10000
	// Hard links to one file: one system call per entry keeps this fast.
	seed := filepath.Join(ts.root(t), "seed")
	if err := os.WriteFile(seed, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := os.Link(seed, filepath.Join(dir, fmt.Sprintf("f%05d", i))); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	fis, err := cl.ReadDir("/big")
	t.Logf("listing %d entries took %v", n, time.Since(t0))
	if err != nil {
		t.Fatal(err)
	}
	if len(fis) != n {
		t.Fatalf("got %d entries, want %d", len(fis), n)
	}
	names := make([]string, len(fis))
	for i, fi := range fis {
		names[i] = fi.Name()
	}
	sort.Strings(names)
	for i, name := range names {
		if want := fmt.Sprintf("f%05d", i); name != want {
			t.Fatalf("entry %d: got %q, want %q", i, name, want)
		}
	}
	if _, err := cl.ReadDir("/big/f00001"); statusCode(err) != fxFailure {
		t.Errorf("readdir on a file: got %v, want failure", err)
	}
	if _, err := cl.ReadDir("/none"); statusCode(err) != fxNoSuchFile {
		t.Errorf("readdir missing: got %v, want no such file", err)
	}
}

func TestDirListerPages(t *testing.T) {
	dir := t.TempDir()
	for i := range 25 {
		os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), nil, 0o644)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	h := &handlers{root: root, sess: newSession(&serverConn{srv: &Server{cfg: Config{MaxHandlesPerSession: 1, MaxHandlesPerUser: 1}}, log: discardLogger()}, &userState{}, "t")}
	d, err := h.openDir("/")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	buf := make([]os.FileInfo, 10)
	var total int64
	var pages int
	for {
		n, err := d.ListAt(buf, total)
		total += int64(n)
		pages++
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if pages > 10 {
			t.Fatal("listing does not end")
		}
	}
	if total != 25 {
		t.Errorf("got %d entries, want 25", total)
	}
	if _, err := d.ListAt(buf, 3); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("out-of-order offset: got %v, want an error", err)
	}
}

func TestLinksUnsupported(t *testing.T) {
	ts := startServer(t, nil)
	cl := ts.sftp(t)
	if err := os.WriteFile(filepath.Join(ts.root(t), "target"), []byte("t"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("target", filepath.Join(ts.root(t), "link")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
	}{
		{"symlink", cl.Symlink("/target", "/newlink")},
		{"hardlink", cl.Link("/target", "/newhard")},
		{"readlink", func() error { _, err := cl.ReadLink("/link"); return err }()},
	}
	for _, tt := range tests {
		if got := statusCode(tt.err); got != fxOpUnsupported {
			t.Errorf("%s: got %v (code %d), want op unsupported", tt.name, tt.err, got)
		}
	}
	for _, name := range []string{"newlink", "newhard"} {
		if _, err := os.Lstat(filepath.Join(ts.root(t), name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s created: %v", name, err)
		}
	}
	// Only the extensions that work are advertised.
	for ext, want := range map[string]bool{"posix-rename@openssh.com": true, "statvfs@openssh.com": true, "hardlink@openssh.com": false} {
		if _, got := cl.HasExtension(ext); got != want {
			t.Errorf("extension %s advertised: got %v, want %v", ext, got, want)
		}
	}
	// lstat sees the link itself.
	fi, err := cl.Lstat("/link")
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("lstat link: got %v, %v, want a symlink", fi, err)
	}
}

func TestConcurrentSessionsStress(t *testing.T) {
	ts := startServer(t, nil)
	const clients, files = 4, 20
	cls := make([]*sftp.Client, clients)
	for i := range cls {
		cls[i] = ts.sftp(t)
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients*files*3)
	for i, cl := range cls {
		wg.Add(2)
		go func() { // writer: create, write, close, rename
			defer wg.Done()
			for j := range files {
				name := fmt.Sprintf("/w%d-%d", i, j)
				f, err := cl.Create(name)
				if err != nil {
					errs <- err
					return
				}
				if _, err := f.Write([]byte(name)); err != nil {
					errs <- err
				}
				if err := f.Close(); err != nil {
					errs <- err
				}
				if err := cl.PosixRename(name, name+".done"); err != nil {
					errs <- err
				}
			}
		}()
		go func() { // lister beside it
			defer wg.Done()
			for range files {
				if _, err := cl.ReadDir("/"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	fis, err := cls[0].ReadDir("/")
	if err != nil {
		t.Fatal(err)
	}
	if len(fis) != clients*files {
		t.Errorf("got %d files, want %d", len(fis), clients*files)
	}
	for _, fi := range fis {
		want := strings.TrimSuffix("/"+fi.Name(), ".done")
		if got, err := os.ReadFile(filepath.Join(ts.root(t), fi.Name())); err != nil || string(got) != want {
			t.Errorf("%s: got %q, %v, want %q", fi.Name(), got, err, want)
		}
	}
}
