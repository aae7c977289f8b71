package fusefs_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestRenameOpenFile renames files, and directories holding them, while
// they are open and dirty: the upload at close goes to the new key, and
// nothing is left at the old one.
func TestRenameOpenFile(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	tests := []struct {
		name     string
		dir      string // made first, when set
		from, to string // paths relative to the workspace
		existing bool   // an object is at "to" already
	}{
		{name: "file", from: "a.txt", to: "b.txt"},
		{name: "over an existing object", from: "c.txt", to: "d.txt", existing: true},
		{name: "into a directory", dir: "into", from: "e.txt", to: "into/e.txt"},
		{name: "its directory", dir: "olddir", from: "olddir/f.txt", to: "newdir/f.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.dir != "" {
				if err := os.Mkdir(filepath.Join(w.dir, tt.dir), 0o755); err != nil {
					t.Fatalf("Mkdir: %v", err)
				}
			}
			if tt.existing {
				putObject(t, w.bucket, w.key(tt.to), []byte("old destination"))
			}
			want := []byte("written before and after the rename of " + tt.name)
			f, err := os.Create(filepath.Join(w.dir, tt.from))
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			defer f.Close()
			if _, err := f.Write(want[:10]); err != nil {
				t.Fatalf("Write: %v", err)
			}
			renFrom, renTo := tt.from, tt.to
			if tt.name == "its directory" {
				renFrom, renTo = "olddir", "newdir"
			}
			if err := os.Rename(filepath.Join(w.dir, renFrom), filepath.Join(w.dir, renTo)); err != nil {
				t.Fatalf("Rename: %v", err)
			}
			if _, err := f.Write(want[10:]); err != nil {
				t.Fatalf("Write after the rename: %v", err)
			}
			if err := f.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got, err := getObject(w.bucket, w.key(tt.to)); err != nil || string(got) != string(want) {
				t.Errorf("object at the new key: got %q, %v, want %q", got, err, want)
			}
			if _, err := statObject(w.bucket, w.key(tt.from)); !isNoSuchKey(err) {
				t.Errorf("object at the old key: got %v, want NoSuchKey", err)
			}
			if got, err := os.ReadFile(filepath.Join(w.dir, tt.to)); err != nil || string(got) != string(want) {
				t.Errorf("through the mount: got %q, %v, want %q", got, err, want)
			}
		})
	}
	if keys := listKeys(t, w.bucket, w.key("olddir/")); len(keys) != 0 {
		t.Errorf("keys under olddir/: got %q, want none", keys)
	}
	want := []string{"b.txt", "d.txt", "into", "newdir"}
	if got := readDirNames(t, w.dir); !slices.Equal(got, want) {
		t.Errorf("workspace: got %q, want %q", got, want)
	}
}
