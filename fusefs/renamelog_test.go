package fusefs_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sftpgate/sftpgate/fusefs"
)

// TestRenameInterrupted plants the record of a file rename a crash cut
// short, in each state the store can be in, and starts a Manager: a rename
// whose copy was made is finished (the source goes), one whose copy was
// not is dropped (the source stays, the destination keeps its old
// content), and a record naming an object outside the workspaces goes to
// conflicts/ and changes nothing.
func TestRenameInterrupted(t *testing.T) {
	tests := []struct {
		name       string
		copied     bool   // the copy to the destination was made
		dstBefore  []byte // the destination before the rename, nil absent
		outside    bool   // the record names another bucket
		wantSrc    bool   // the source object exists after the start
		wantDst    []byte // the destination after the start, nil absent
		conflicted bool
	}{
		{name: "copied, not deleted", copied: true, wantDst: []byte("moving")},
		{name: "copied over an old object", copied: true, dstBefore: []byte("old"), wantDst: []byte("moving")},
		{name: "not copied", wantSrc: true},
		{name: "not copied, destination kept", dstBefore: []byte("old"), wantSrc: true, wantDst: []byte("old")},
		{name: "outside the workspaces", copied: true, outside: true, wantSrc: true, wantDst: []byte("moving"), conflicted: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions(t)
			bucket := server.NewBucket(t, "ren")
			o.ValidKey = func(b, key string) bool { return b == bucket }
			src, dst := "files/a.txt", "files/b.txt"
			putObject(t, bucket, src, []byte("moving"))
			dstETag := ""
			if tt.dstBefore != nil {
				putObject(t, bucket, dst, tt.dstBefore)
				info, err := statObject(bucket, dst)
				if err != nil {
					t.Fatal(err)
				}
				dstETag = info.ETag
			}
			if tt.copied {
				putObject(t, bucket, dst, []byte("moving"))
			}
			recBucket := bucket
			if tt.outside {
				recBucket = "another-bucket"
			}
			cache := filepath.Join(o.TmpDir, "sftpgate")
			mkdirMode(t, filepath.Join(cache, "conflicts"), 0o700)
			mkdirMode(t, cache, 0o700)
			const id = "0000000000000000000000c1"
			writeJSON(t, filepath.Join(cache, id+".rename"), map[string]string{
				"src_bucket": recBucket, "src_key": src, "dst_bucket": recBucket, "dst_key": dst, "dst_etag": dstETag,
			})

			g := newGateway(t, o)
			g.grants.set("alice", fusefs.Workspace{Slug: "ws", Bucket: bucket, Prefix: "files/"})

			if _, err := statObject(bucket, src); (err == nil) != tt.wantSrc {
				t.Errorf("source after the start: %v, want present %v", err, tt.wantSrc)
			}
			got, err := getObject(bucket, dst)
			switch {
			case tt.wantDst == nil && !isNoSuchKey(err):
				t.Errorf("destination after the start: got %q, %v; want absent", got, err)
			case tt.wantDst != nil && string(got) != string(tt.wantDst):
				t.Errorf("destination after the start: got %q, %v; want %q", got, err, tt.wantDst)
			}
			top := readDirNames(t, cache)
			if slices.Contains(top, id+".rename") {
				t.Errorf("rename record still in the cache: %v", top)
			}
			if c := slices.Contains(readDirNames(t, filepath.Join(cache, "conflicts")), id+".rename"); c != tt.conflicted {
				t.Errorf("rename record in conflicts/: %v, want %v", c, tt.conflicted)
			}
		})
	}
}

// TestRenameLeavesNoRecord: a rename that returned leaves no record.
func TestRenameLeavesNoRecord(t *testing.T) {
	o := testOptions(t)
	w := mountWorkspace(t, o)
	if err := os.WriteFile(filepath.Join(w.dir, "a"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(w.dir, "a"), filepath.Join(w.dir, "b")); err != nil {
		t.Fatal(err)
	}
	for _, n := range readDirNames(t, filepath.Join(o.TmpDir, "sftpgate")) {
		if filepath.Ext(n) == ".rename" || filepath.Ext(n) == ".tmp" {
			t.Errorf("left in the cache after a rename: %s", n)
		}
	}
}
