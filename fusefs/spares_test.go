package fusefs

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSpares: the pool removes the spares a previous run left (a symlink
// among them, never followed) and makes none until a file is asked for;
// then it fills to sparesStart, doubling each time it is found empty up to
// sparesMax, and a new file takes a spare (an empty regular file renamed
// into place); a spare that is no longer an empty regular file is never
// used, the file is created instead.
func TestSpares(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("victim"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "0123.spare"), []byte("left"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "4567.spare")); err != nil {
		t.Fatal(err)
	}
	sp := newSpares(root, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sp.run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	waitSpares := func(want int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for sp.ready() < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := sp.ready(); got < want {
			t.Fatalf("spares ready: got %d, want %d", got, want)
		}
	}
	waitGone := func(names ...string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for _, n := range names {
			for time.Now().Before(deadline) {
				if _, err := os.Lstat(filepath.Join(dir, n)); os.IsNotExist(err) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := os.Lstat(filepath.Join(dir, n)); !os.IsNotExist(err) {
				t.Fatalf("a spare of an earlier run is still there: %s (%v)", n, err)
			}
		}
	}
	waitGone("0123.spare", "4567.spare")
	if got := sp.ready(); got != 0 {
		t.Errorf("spares before any copy: got %d, want 0 (made once asked)", got)
	}

	// The first file finds the pool empty: created, and the pool fills.
	for _, name := range []string{"a.data", "b.data"} {
		f, err := createFile(root, sp, name, os.O_RDWR)
		if err != nil {
			t.Fatalf("createFile(%s): %v", name, err)
		}
		if _, err := f.WriteString("bytes of " + name); err != nil {
			t.Fatal(err)
		}
		f.Close()
		waitSpares(sparesStart)
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != "bytes of "+name {
			t.Errorf("%s: got %q, %v", name, b, err)
		}
	}
	// b.data was a spare: the directory holds the two files and the pool.
	if names, _ := readDirNames(root, "."); len(names) != 2+sparesStart {
		t.Errorf("files in the directory: got %d (%v), want a.data, b.data and %d spares", len(names), names, sparesStart)
	}
	// A pool found empty doubles, up to sparesMax.
	for want := 2 * sparesStart; want <= 2*sparesMax; want *= 2 {
		sp.mu.Lock()
		sp.names = nil
		sp.mu.Unlock()
		f, err := createFile(root, sp, "c.data", os.O_RDWR)
		if err != nil {
			t.Fatalf("createFile(c.data): %v", err)
		}
		f.Close()
		root.Remove("c.data")
		waitSpares(min(want, sparesMax))
	}
	sp.mu.Lock()
	want := sp.want
	sp.mu.Unlock()
	if want != sparesMax {
		t.Errorf("spares wanted after many dry takes: got %d, want %d", want, sparesMax)
	}

	// Spares spoiled behind the pool: not used, removed; the file is
	// created. Stop the filler first so that the pool is what we see.
	cancel()
	<-done
	sp.mu.Lock()
	spoiled := append([]string(nil), sp.names[len(sp.names)-2:]...)
	sp.mu.Unlock()
	// take pops from the end: the last one is a symlink, the one before
	// holds bytes.
	os.Remove(filepath.Join(dir, spoiled[1]))
	if err := os.Symlink(victim, filepath.Join(dir, spoiled[1])); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, spoiled[0]), []byte("not empty"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"b.json", "c.json"} {
		f, err := createFile(root, sp, name, os.O_WRONLY|os.O_APPEND)
		if err != nil {
			t.Fatalf("createFile(%s): %v", name, err)
		}
		fi, err := f.Stat()
		f.Close()
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
			t.Errorf("%s: got %v, %v, want an empty regular file", name, fi, err)
		}
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "victim" {
		t.Errorf("victim: got %q, %v, want it untouched", b, err)
	}
	for _, s := range spoiled {
		if _, err := os.Lstat(filepath.Join(dir, s)); !os.IsNotExist(err) {
			t.Errorf("spoiled spare %s: %v, want it gone", s, err)
		}
	}

	// An empty pool: files are created.
	sp.mu.Lock()
	sp.names = nil
	sp.mu.Unlock()
	f, err := createFile(root, sp, "d.data", os.O_RDWR)
	if err != nil {
		t.Fatalf("createFile with no spare: %v", err)
	}
	f.Close()
	if _, err := createFile(root, sp, "d.data", os.O_RDWR); err == nil {
		t.Errorf("createFile over an existing file with no spare: got nil, want it refused (O_EXCL)")
	}
	names, _ := readDirNames(root, ".")
	for _, n := range names {
		if strings.HasSuffix(n, ".spare") {
			continue
		}
		switch n {
		case "a.data", "b.data", "b.json", "c.json", "d.data":
		default:
			t.Errorf("unexpected file %s", n)
		}
	}
}
