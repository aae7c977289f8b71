package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/sftpgate/sftpgate/internal/testenv"
)

// smokeGrants is a fixed grant table.
type smokeGrants struct {
	mu sync.Mutex
	ws map[string][]Workspace
}

func (g *smokeGrants) Workspaces(ctx context.Context, user string) ([]Workspace, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Workspace(nil), g.ws[user]...), nil
}

type smokeEnv struct {
	m      *Manager
	mc     *minio.Client
	bucket string
	dir    string // the workspace directory inside the mount
}

// startManager starts a manager for alice (workspaces "files", read-write,
// and "ro", read-only, both on prefix alice/ of a fresh bucket) on a MinIO
// server of its own; adjust, if not nil, changes the options first. The
// manager is shut down in cleanup, which fails the test if anything stays
// mounted.
func startManager(t *testing.T, adjust func(*Options)) (*Manager, *testenv.MinIO, string) {
	t.Helper()
	srv := testenv.StartMinIOT(t)
	bucket := srv.NewBucket(t, "smoke")
	g := &smokeGrants{ws: map[string][]Workspace{
		"alice": {
			{Slug: "files", Bucket: bucket, Prefix: "alice/"},
			{Slug: "ro", Bucket: bucket, Prefix: "alice/", ReadOnly: true},
		},
	}}
	root := t.TempDir()
	o := Options{
		Client: srv.Client, Grants: g,
		MountRoot: filepath.Join(root, "mnt"), TmpDir: filepath.Join(root, "tmp"),
		MinFree: -1, PartSize: 5 << 20,
	}
	if adjust != nil {
		adjust(&o)
	}
	m, err := NewManager(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if got := procMounts(t, root); len(got) != 0 {
			t.Errorf("mounts left after shutdown: %v", got)
		}
	})
	return m, srv, bucket
}

func startSmoke(t *testing.T) *smokeEnv {
	t.Helper()
	m, srv, bucket := startManager(t, nil)
	dir, release, err := m.Acquire(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return &smokeEnv{m: m, mc: srv.Client, bucket: bucket, dir: dir}
}

func (e *smokeEnv) object(t *testing.T, key string) []byte {
	t.Helper()
	o, err := e.mc.GetObject(context.Background(), e.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer o.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(o); err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return b.Bytes()
}

func TestSmokeReadWriteListRename(t *testing.T) {
	env := startSmoke(t)
	ws := filepath.Join(env.dir, "files")

	names, err := os.ReadDir(env.dir)
	if err != nil || len(names) != 2 {
		t.Fatalf("root listing: got %v, %v, want 2 workspaces", names, err)
	}
	if err := os.WriteFile(filepath.Join(env.dir, "x"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("create in root: got %v, want EROFS", err)
	}

	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	p := filepath.Join(ws, "a.bin")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := env.object(t, "alice/a.bin"); !bytes.Equal(got, data) {
		t.Fatalf("object: got %d bytes, want %d", len(got), len(data))
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: got %d bytes, %v", len(got), err)
	}

	// Random-order writes and append.
	f, err := os.OpenFile(filepath.Join(ws, "r.bin"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("world"), 6)
	f.WriteAt([]byte("hello "), 0)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f, err = os.OpenFile(filepath.Join(ws, "r.bin"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("!"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := string(env.object(t, "alice/r.bin")); got != "hello world!" {
		t.Errorf("r.bin: got %q, want %q", got, "hello world!")
	}

	// Directories and rename.
	if err := os.MkdirAll(filepath.Join(ws, "d/e"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "d/e/f.txt"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(ws, "d")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("rmdir non-empty: got %v, want ENOTEMPTY", err)
	}
	if err := os.Rename(filepath.Join(ws, "d"), filepath.Join(ws, "d2")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(ws, "d2/e/f.txt")); err != nil || string(got) != "f" {
		t.Errorf("after dir rename: got %q, %v", got, err)
	}
	if err := os.Rename(filepath.Join(ws, "a.bin"), filepath.Join(ws, "d2/b.bin")); err != nil {
		t.Fatal(err)
	}
	if got := env.object(t, "alice/d2/b.bin"); !bytes.Equal(got, data) {
		t.Errorf("renamed object: got %d bytes", len(got))
	}
	ents, err := os.ReadDir(ws)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, e := range ents {
		listed = append(listed, e.Name())
	}
	if fmt.Sprint(listed) != "[d2 r.bin]" {
		t.Errorf("listing: got %v, want [d2 r.bin]", listed)
	}
	if err := os.WriteFile(filepath.Join(env.dir, "ro", "x"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("create in read-only workspace: got %v, want EROFS", err)
	}
	if err := os.Symlink("x", filepath.Join(ws, "l")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("symlink: got %v, want EPERM", err)
	}
}

func TestSmokeConcurrent(t *testing.T) {
	env := startSmoke(t)
	ws := filepath.Join(env.dir, "files")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				p := filepath.Join(ws, fmt.Sprintf("c%d-%d", i, j))
				want := bytes.Repeat([]byte{byte(i)}, 100_000+j)
				if err := os.WriteFile(p, want, 0o644); err != nil {
					errs <- err
					return
				}
				if _, err := os.ReadDir(ws); err != nil {
					errs <- err
					return
				}
				if err := os.Rename(p, p+".r"); err != nil {
					errs <- err
					return
				}
				got, err := os.ReadFile(p + ".r")
				if err != nil || !bytes.Equal(got, want) {
					errs <- fmt.Errorf("%s: got %d bytes, %v", p, len(got), err)
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
	// The kernel releases handles asynchronously after close.
	deadline := time.Now().Add(3 * time.Second)
	for {
		st := env.m.Stats()
		if len(st) == 1 && st[0].OpenFiles == 0 && st[0].DirtyBytes == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("stats: got %+v, want one view with no open file and nothing dirty", st)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSmokeErrno(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"nil", nil, 0},
		{"not empty wrapped", fmt.Errorf("rmdir: %w", ErrNotEmpty), syscall.ENOTEMPTY},
		{"read-only", fmt.Errorf("create: %w", ErrReadOnly), syscall.EROFS},
		{"no space", fmt.Errorf("write: %w", ErrNoSpace), syscall.ENOSPC},
		{"busy", fmt.Errorf("unmount: %w", ErrBusy), syscall.EBUSY},
		{"no such key", fmt.Errorf("stat: %w", minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404}), syscall.ENOENT},
		{"no such bucket", minio.ErrorResponse{Code: "NoSuchBucket"}, syscall.ENOENT},
		{"access denied", fmt.Errorf("put: %w", minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}), syscall.EACCES},
		{"slow down", minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, syscall.EAGAIN},
		{"too large", minio.ErrorResponse{Code: "EntityTooLarge"}, syscall.EFBIG},
		{"key too long", minio.ErrorResponse{Code: "KeyTooLongError"}, syscall.ENAMETOOLONG},
		{"bad name", minio.ErrorResponse{Code: "XMinioInvalidObjectName"}, syscall.EINVAL},
		{"cancelled", fmt.Errorf("get: %w", context.Canceled), syscall.EINTR},
		{"os errno", &os.PathError{Op: "open", Path: "x", Err: syscall.EMFILE}, syscall.EMFILE},
		{"unknown", errors.New("boom"), syscall.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errno(tt.err); got != tt.want {
				t.Errorf("errno(%v): got %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestSmokeNames(t *testing.T) {
	users := []struct {
		user string
		ok   bool
	}{
		{"alice", true}, {"a.b-c_d@e", true}, {"", false}, {".", false}, {"..", false},
		{"a/b", false}, {"a\x00b", false}, {"a\nb", false}, {readOnlyDir, false},
	}
	for _, tt := range users {
		if err := checkUser(tt.user); (err == nil) != tt.ok {
			t.Errorf("checkUser(%q): got %v, want ok %v", tt.user, err, tt.ok)
		}
	}
	prefixes := []struct {
		in, want string
		ok       bool
	}{
		{"", "", true}, {"/", "", true}, {"alice", "alice/", true}, {"/a/b/", "a/b/", true},
		{"a//b", "", false}, {"a/../b", "", false}, {"a/./b", "", false},
	}
	for _, tt := range prefixes {
		got, err := normPrefix(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("normPrefix(%q): got %q, %v, want %q (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
	names := []struct {
		name string
		ok   bool
	}{
		{"plain.txt", true}, {"é ü 日本", true}, {"a\u00a0b", true},
		{"a\nb", false}, {"a\tb", false}, {"\x1b[31m", false}, {"a\x7f", false},
		{"a\u0085b", false}, {"a\u009fb", false}, {"a\xffb", false}, {"a\xc3", false},
	}
	for _, tt := range names {
		if err := checkName(tt.name); (err == nil) != tt.ok {
			t.Errorf("checkName(%q): got %v, want ok %v", tt.name, err, tt.ok)
		}
	}
	if got, ok := parseMtime(formatMtime(time.Unix(1700000000, 123456789))); !ok || got.UnixNano() != 1700000000123456789 {
		t.Errorf("mtime round trip: got %v, %v", got, ok)
	}
}

func TestSmokeIdleUnmountAndReadOnlyView(t *testing.T) {
	var (
		g   *smokeGrants
		mnt string
	)
	m, _, bucket := startManager(t, func(o *Options) {
		o.IdleDelay = 100 * time.Millisecond
		g, mnt = o.Grants.(*smokeGrants), o.MountRoot
	})
	g.mu.Lock()
	g.ws["bob"] = []Workspace{{Slug: "w", Bucket: bucket, Prefix: "bob/"}}
	g.mu.Unlock()
	ctx := context.Background()
	if _, _, err := m.Acquire(ctx, "../x"); !errors.Is(err, ErrInvalidUser) {
		t.Errorf("Acquire(../x): got %v, want ErrInvalidUser", err)
	}
	dir, release, err := m.Acquire(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "w", "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	rodir, rorelease, err := m.AcquireWith(ctx, "bob", MountOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(rodir, "w", "f")); err != nil || string(got) != "data" {
		t.Errorf("read through the read-only view: got %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(rodir, "w", "g"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write through the read-only view: got %v, want EROFS", err)
	}
	release()
	release() // idempotent
	rorelease()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mps, err := fuseMounts(mnt)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Stats()) == 0 && len(mps) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after IdleDelay: got views %+v, mounts %v, want none", m.Stats(), mps)
		}
		time.Sleep(20 * time.Millisecond)
	}
	dir2, release2, err := m.Acquire(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	defer release2()
	if got, err := os.ReadFile(filepath.Join(dir2, "w", "f")); err != nil || string(got) != "data" {
		t.Errorf("after remount: got %q, %v", got, err)
	}
}
