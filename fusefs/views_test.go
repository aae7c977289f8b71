package fusefs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/sftpgate/sftpgate/fusefs"
)

// TestRootReadOnly checks that nothing can be created at the root of a
// mount, where the workspaces are listed.
func TestRootReadOnly(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	tests := []struct {
		name string
		op   func() error
	}{
		{"create", func() error {
			f, err := os.Create(filepath.Join(w.root, "stray.txt"))
			if err == nil {
				f.Close()
			}
			return err
		}},
		{"mkdir", func() error { return os.Mkdir(filepath.Join(w.root, "stray"), 0o755) }},
		{"rmdir workspace", func() error { return syscall.Rmdir(w.dir) }},
		{"rename workspace", func() error { return os.Rename(w.dir, filepath.Join(w.root, "other")) }},
		{"move a file to the root", func() error {
			if err := os.WriteFile(filepath.Join(w.dir, "f"), []byte("x"), 0o644); err != nil {
				return err
			}
			return os.Rename(filepath.Join(w.dir, "f"), filepath.Join(w.root, "f"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErrno(t, tt.name, tt.op(), syscall.EROFS, syscall.EPERM, syscall.EACCES)
		})
	}
	if got := readDirNames(t, w.root); !slices.Equal(got, []string{"ws"}) {
		t.Errorf("root: got %q, want [ws]", got)
	}
}

// TestGrantsChange changes a user's grants while mounted: the root listing
// follows within a few seconds.
func TestGrantsChange(t *testing.T) {
	g := newGateway(t, testOptions(t))
	a := fusefs.Workspace{Slug: "alpha", Bucket: server.NewBucket(t, "alpha")}
	b := fusefs.Workspace{Slug: "beta", Bucket: server.NewBucket(t, "beta")}
	g.grants.set("carol", a)
	root := g.acquire(t, "carol")
	if got := readDirNames(t, root); !slices.Equal(got, []string{"alpha"}) {
		t.Fatalf("root: got %q, want [alpha]", got)
	}
	steps := []struct {
		name string
		ws   []fusefs.Workspace
		want []string
	}{
		{"grant beta", []fusefs.Workspace{a, b}, []string{"alpha", "beta"}},
		{"revoke alpha", []fusefs.Workspace{b}, []string{"beta"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			g.grants.set("carol", st.ws...)
			var got []string
			err := eventually(5*time.Second, func() error {
				got = readDirNames(t, root)
				if !slices.Equal(got, st.want) {
					return os.ErrNotExist
				}
				return nil
			})
			if err != nil {
				t.Errorf("root after 5s: got %q, want %q", got, st.want)
			}
		})
	}
	err := eventually(5*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(root, "alpha")); !os.IsNotExist(err) {
			return fmt.Errorf("got %v, want ENOENT", err)
		}
		return nil
	})
	if err != nil {
		t.Errorf("Stat(alpha) 5s after revoke: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "beta", "f"), []byte("x"), 0o644); err != nil {
		t.Errorf("write into the new workspace: %v", err)
	}
	if got := mustGetObject(t, b.Bucket, "f"); string(got) != "x" {
		t.Errorf("object: got %q, want %q", got, "x")
	}
}
