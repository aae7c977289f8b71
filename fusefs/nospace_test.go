package fusefs_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNoSpace sets the free-space reserve of TmpDir above what its file
// system has: writes get ENOSPC and no object is created or replaced.
func TestNoSpace(t *testing.T) {
	o := testOptions(t)
	if err := os.MkdirAll(o.TmpDir, 0o700); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(o.TmpDir, &st); err != nil {
		t.Fatalf("Statfs: %v", err)
	}
	free := int64(st.Bavail) * st.Bsize
	o.MinFree = free + 1<<30
	w := mountWorkspace(t, o)
	putObject(t, w.bucket, w.key("existing.txt"), []byte("keep me"))

	tests := []struct {
		name  string
		flags int
		want  string // object content after close; "" = no object
	}{
		{name: "new.txt", flags: os.O_CREATE | os.O_WRONLY},
		{name: "existing.txt", flags: os.O_RDWR, want: "keep me"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.OpenFile(filepath.Join(w.dir, tt.name), tt.flags, 0o644)
			if err != nil {
				wantErrno(t, "OpenFile", err, syscall.ENOSPC)
			} else {
				// The reserve may be checked every few writes: write up to
				// 4 MiB, and want ENOSPC before the end.
				chunk := make([]byte, 64<<10)
				var off int64
				for err == nil && off < 4<<20 {
					_, err = f.WriteAt(chunk, off)
					off += int64(len(chunk))
				}
				wantErrno(t, "WriteAt", err, syscall.ENOSPC)
				f.Close() // its error may be ENOSPC too: only the object matters
			}
			b, err := getObject(w.bucket, w.key(tt.name))
			switch {
			case tt.want == "" && !isNoSuchKey(err):
				t.Errorf("object after close: got %q, %v, want none", b, err)
			case tt.want != "" && (err != nil || string(b) != tt.want):
				t.Errorf("object after close: got %q, %v, want %q", b, err, tt.want)
			}
		})
	}
}
