package fusefs_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/minio/minio-go/v7"
)

// TestRenameDir renames a directory of 1,000 files: every key moves, the
// old prefix is left empty.
func TestRenameDir(t *testing.T) {
	const n = 1000
	w := mountWorkspace(t, testOptions(t))
	var keys, want []string
	for i := range n {
		name := fmt.Sprintf("f%04d.txt", i)
		keys = append(keys, w.key("old/"+name))
		want = append(want, w.key("new/"+name))
	}
	keys = append(keys, w.key("old/sub/deep.txt"))
	want = append(want, w.key("new/sub/deep.txt"))
	slices.Sort(want)
	putMany(t, w.bucket, keys)

	if err := os.Rename(filepath.Join(w.dir, "old"), filepath.Join(w.dir, "new")); err != nil {
		t.Fatalf("Rename: %v", err)
	}
	if got := listKeys(t, w.bucket, w.key("old/")); len(got) != 0 {
		t.Errorf("keys left under old/: got %d (first %q), want 0", len(got), got[0])
	}
	got := listKeys(t, w.bucket, w.key("new/"))
	if !slices.Equal(got, want) {
		t.Errorf("keys under new/: got %d keys, want %d (equal: false)", len(got), len(want))
	}
	if b := string(mustGetObject(t, w.bucket, w.key("new/f0042.txt"))); b != "content of "+w.key("old/f0042.txt") {
		t.Errorf("moved content: got %q, want %q", b, "content of "+w.key("old/f0042.txt"))
	}
	if names := readDirNames(t, filepath.Join(w.dir, "new")); len(names) != n+1 {
		t.Errorf("entries in new/ through the mount: got %d, want %d", len(names), n+1)
	}
	if _, err := os.Stat(filepath.Join(w.dir, "old")); !os.IsNotExist(err) {
		t.Errorf("Stat(old): got %v, want ENOENT", err)
	}
}

// TestListLargeDir lists a prefix of 10,000 objects put directly.
func TestListLargeDir(t *testing.T) {
	const n = 10000
	w := mountWorkspace(t, testOptions(t))
	want := make([]string, n)
	keys := make([]string, n)
	for i := range n {
		want[i] = fmt.Sprintf("obj-%05d", i)
		keys[i] = w.key("many/" + want[i])
	}
	start := time.Now()
	putMany(t, w.bucket, keys)
	t.Logf("put %d objects: %v", n, time.Since(start))
	start = time.Now()
	got := readDirNames(t, filepath.Join(w.dir, "many"))
	t.Logf("ReadDir of %d entries: %v", n, time.Since(start))
	if !slices.Equal(got, want) {
		t.Errorf("entries: got %d names, want the %d keys (equal: false)", len(got), len(want))
	}
}

// TestExternalPutVisible puts objects with minio-go behind a mount that
// already listed their directory: they show up within a few seconds.
func TestExternalPutVisible(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	if err := os.Mkdir(filepath.Join(w.dir, "sub"), 0o755); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	for _, d := range []string{"", "sub"} {
		readDirNames(t, filepath.Join(w.dir, d)) // warm the caches
		if _, err := os.Stat(filepath.Join(w.dir, d, "late.txt")); !os.IsNotExist(err) {
			t.Fatalf("Stat before the put: got %v, want ENOENT", err)
		}
	}
	for _, d := range []string{"", "sub"} {
		t.Run("dir="+d, func(t *testing.T) {
			name := filepath.Join(d, "late.txt")
			putObject(t, w.bucket, w.key(filepath.ToSlash(name)), []byte("put behind the mount"))
			err := eventually(5*time.Second, func() error {
				if !slices.Contains(readDirNames(t, filepath.Join(w.dir, d)), "late.txt") {
					return fmt.Errorf("late.txt not listed")
				}
				b, err := os.ReadFile(filepath.Join(w.dir, name))
				if err != nil {
					return err
				}
				if string(b) != "put behind the mount" {
					return fmt.Errorf("content: got %q, want %q", b, "put behind the mount")
				}
				return nil
			})
			if err != nil {
				t.Errorf("after 5s: %v", err)
			}
		})
	}
}

// TestRmdirNotEmpty refuses to remove directories that hold something.
func TestRmdirNotEmpty(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	if err := os.Mkdir(filepath.Join(w.dir, "made"), 0o755); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, "made", "f"), []byte("x"), 0o644); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	putObject(t, w.bucket, w.key("implied/deeper/f"), []byte("x"))
	putObject(t, w.bucket, w.key("marked/"), nil)
	putObject(t, w.bucket, w.key("marked/f"), []byte("x"))
	for _, d := range []string{"made", "implied", "implied/deeper", "marked"} {
		t.Run(d, func(t *testing.T) {
			err := syscall.Rmdir(filepath.Join(w.dir, d))
			wantErrno(t, "Rmdir", err, syscall.ENOTEMPTY)
			if _, err := os.Stat(filepath.Join(w.dir, d)); err != nil {
				t.Errorf("Stat after the refused rmdir: %v", err)
			}
		})
	}
	if keys := listKeys(t, w.bucket, w.key("marked/")); !slices.Equal(keys, []string{w.key("marked/"), w.key("marked/f")}) {
		t.Errorf("keys under marked/: got %q, want the marker and f", keys)
	}
}

// TestHostileKeys lists a bucket holding keys that cannot all be names:
// they are skipped (control characters and invalid UTF-8 included), the
// rest is listed, and one listing logs the skipped keys once, escaped.
func TestHostileKeys(t *testing.T) {
	o := testOptions(t)
	logs := &lockedBuffer{}
	o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager log:\n%s", logs.String())
		}
	})
	w := mountWorkspace(t, o)
	long := strings.Repeat("L", 300)
	hostile := []string{"nl\nname", "esc\x1b[31mred", "del\x7f", "c1\u0085", "bad\xffutf8", "ctl-dir\n/f"}
	mayRefuse := map[string]bool{"a//b": true, "../x": true, "x/./y": true, "x/../z": true, long: true, "deep/" + long + "/f": true, "bad\xffutf8": true}
	for _, k := range []string{
		"a//b",
		"../x",
		"x/./y",
		"x/../z",
		long,
		"deep/" + long + "/f",
		"both",
		"both/inner",
		"marker-with-data/", // a "directory marker" that holds bytes
		hostile[0], hostile[1], hostile[2], hostile[3], hostile[4], hostile[5],
		strings.Repeat("M", 255), // the longest valid name
		"normal.txt",
		"dir/ok.txt",
	} {
		// MinIO itself refuses some of these ("a//b", "../x", "x/./y"):
		// what it refuses cannot reach the mount either.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		data := []byte("data of " + k)
		_, err := server.Client.PutObject(ctx, w.bucket, w.key(k), bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
		cancel()
		if err != nil {
			if !mayRefuse[k] {
				t.Fatalf("put %q: %v", k, err)
			}
			t.Logf("MinIO refuses key %q: %v", k, err)
		}
	}
	names := readDirNames(t, w.dir)
	for _, n := range names {
		if n == "" || n == "." || n == ".." || strings.Contains(n, "/") || len(n) > 255 ||
			!utf8.ValidString(n) || strings.IndexFunc(n, unicode.IsControl) >= 0 {
			t.Errorf("listed name %q: not a valid file name", n)
		}
	}
	skipLines := 0
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.HasPrefix(l, "time=") {
			t.Errorf("log line %q: a raw control character split a line", l)
		}
		if strings.Contains(l, "skipped keys that cannot be file names") {
			skipLines++
			if !strings.Contains(l, `nl\\nname`) {
				t.Errorf("log line %q: want the key nl\\nname escaped in it", l)
			}
		}
	}
	if skipLines != 1 {
		t.Errorf("log lines about skipped keys after one listing: got %d, want 1", skipLines)
	}
	for _, n := range []string{"normal.txt", "dir", "both", strings.Repeat("M", 255)} {
		if !slices.Contains(names, n) {
			t.Errorf("root listing %q: want %q in it", names, n)
		}
	}
	for name, want := range map[string]string{"normal.txt": "normal.txt", "dir/ok.txt": "dir/ok.txt"} {
		b, err := os.ReadFile(filepath.Join(w.dir, name))
		if err != nil {
			t.Errorf("ReadFile(%s): %v", name, err)
		} else if string(b) != "data of "+want {
			t.Errorf("ReadFile(%s): got %q, want %q", name, b, "data of "+want)
		}
	}
	seen := 0
	err := filepath.WalkDir(w.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		seen++
		if seen > 100 {
			return fmt.Errorf("more than 100 entries: a loop?")
		}
		if !d.IsDir() {
			if _, err := os.ReadFile(p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("WalkDir: %v", err)
	}
}
