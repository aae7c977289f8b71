package fusefs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/sftpgate/sftpgate/fusefs"
)

// Ids as the cache makes them: 24 lowercase hex digits.
const (
	idOtherBucket = "0000000000000000000000a1"
	idOutsideWS   = "0000000000000000000000a2"
	idMalformed   = "0000000000000000000000a3"
	idOversized   = "0000000000000000000000a4"
	idDataLink    = "0000000000000000000000a5"
	idUploadElse  = "0000000000000000000000a6"
	idNobody      = "0000000000000000000000a7"
	idTrusted     = "0000000000000000000000b1"
)

// plantedJournal is a journal as the cache writes it.
type plantedJournal struct {
	Bucket     string    `json:"bucket"`
	Key        string    `json:"key"`
	BaseExists bool      `json:"base_exists"`
	Size       int64     `json:"size"`
	Mtime      time.Time `json:"mtime"`
	Dirty      bool      `json:"dirty"`
	Complete   bool      `json:"complete"`
	Durable    int64     `json:"durable,omitempty"`
	Uploads    []struct {
		Bucket string `json:"bucket"`
		Key    string `json:"key"`
		ID     string `json:"id"`
	} `json:"uploads,omitempty"`
}

// plant writes a dirty journal for bucket/key and its data file under the
// names name.json and name.data in dir.
func plant(tb testing.TB, dir, name, bucket, key string, data []byte) plantedJournal {
	tb.Helper()
	j := plantedJournal{Bucket: bucket, Key: key, Size: int64(len(data)), Mtime: time.Now(), Dirty: true, Complete: true, Durable: int64(len(data))}
	writeJSON(tb, filepath.Join(dir, name+".json"), j)
	writeFile(tb, filepath.Join(dir, name+".data"), data)
	return j
}

func writeJSON(tb testing.TB, path string, v any) {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	writeFile(tb, path, b)
}

func writeFile(tb testing.TB, path string, b []byte) {
	tb.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// cacheLogger returns a logger whose lines are kept in the returned buffer.
func cacheLogger() (*slog.Logger, *lockedBuffer) {
	logs := &lockedBuffer{}
	return slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})), logs
}

// objectKeys lists every key of bucket.
func objectKeys(tb testing.TB, bucket string) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var keys []string
	for o := range server.Client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			tb.Fatalf("list %s: %v", bucket, o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

// TestCacheDirRefused: a <TmpDir>/sftpgate another local user could write
// in (or swap) is refused at start with one line naming the path, the owner
// found and the fix; nothing in it is read.
func TestCacheDirRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create directories as another user")
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, cacheDir string)
		want  []string // in the error
	}{
		{"planted by nobody, mode 0777", func(t *testing.T, cacheDir string) {
			// As another local user would: mkdir in the sticky shared dir.
			out, err := exec.Command("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
				"mkdir", "-m", "0777", cacheDir).CombinedOutput()
			if err != nil {
				t.Fatalf("mkdir as nobody: %v: %s", err, out)
			}
			plant(t, cacheDir, idOtherBucket, "personal", "bob/planted.txt", []byte("planted"))
		}, []string{"owned by nobody (uid 65534)", "mode 0777", "fix: chown root ", "chmod 0700 "}},
		{"own, mode 0777", func(t *testing.T, cacheDir string) {
			mkdirMode(t, cacheDir, 0o777)
		}, []string{"owned by root (uid 0)", "mode 0777", "fix: chown root "}},
		{"own, group-writable", func(t *testing.T, cacheDir string) {
			mkdirMode(t, cacheDir, 0o770)
		}, []string{"mode 0770", "chmod 0700 "}},
		{"symlink", func(t *testing.T, cacheDir string) {
			target := t.TempDir()
			if err := os.Symlink(target, cacheDir); err != nil {
				t.Fatal(err)
			}
		}, []string{"is a symlink (to ", "fix: rm "}},
		{"regular file", func(t *testing.T, cacheDir string) {
			writeFile(t, cacheDir, []byte("x"))
		}, []string{"is not a directory"}},
		{"conflicts writable by others", func(t *testing.T, cacheDir string) {
			mkdirMode(t, cacheDir, 0o700)
			mkdirMode(t, filepath.Join(cacheDir, "conflicts"), 0o777)
		}, []string{filepath.Join("sftpgate", "conflicts") + " is owned by root (uid 0) with mode 0777"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions(t)
			// A shared temporary directory, like /tmp: others may create in it.
			for _, d := range []string{filepath.Dir(filepath.Dir(o.TmpDir)), filepath.Dir(o.TmpDir)} {
				if err := os.Chmod(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			mkdirMode(t, o.TmpDir, 0o1777)
			cacheDir := filepath.Join(o.TmpDir, "sftpgate")
			tt.setup(t, cacheDir)
			bucket := server.NewBucket(t, "refused")
			o.ValidKey = func(b, key string) bool { return b == bucket }
			_, err := startGateway(t, o)
			if err == nil {
				t.Fatalf("NewManager: got no error, want the cache directory refused")
			}
			if !errors.Is(err, fusefs.ErrUnsafeCacheDir) {
				t.Errorf("got error %v, want it to wrap ErrUnsafeCacheDir", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("got a message of several lines, want one: %q", msg)
			}
			for _, w := range append([]string{cacheDir}, tt.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("got error %q, want it to contain %q", msg, w)
				}
			}
		})
	}
}

func mkdirMode(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // not subject to the umask
		t.Fatal(err)
	}
}

// TestUntrustedJournals plants journals in a correct cache directory (as
// the daemon's user, root here, would find them): each one recovery must
// not act upon is moved to conflicts/ with a log line naming it, nothing it
// names is uploaded, and the start goes on.
func TestUntrustedJournals(t *testing.T) {
	o := testOptions(t)
	bucket := server.NewBucket(t, "ws")
	other := server.NewBucket(t, "personal")
	o.ValidKey = func(b, key string) bool {
		return b == bucket && strings.HasPrefix(key, "files/") && len(key) > len("files/")
	}
	logger, logs := cacheLogger()
	o.Logger = logger
	cacheDir := filepath.Join(o.TmpDir, "sftpgate")
	mkdirMode(t, cacheDir, 0o700)
	victim := filepath.Join(o.TmpDir, "victim")
	writeFile(t, victim, []byte("the victim's bytes"))

	plant(t, cacheDir, idOtherBucket, other, "bob/planted.txt", []byte("planted in another bucket"))
	plant(t, cacheDir, idOutsideWS, bucket, "personal/bob/planted.txt", []byte("planted outside the workspaces"))
	plant(t, cacheDir, "planted", bucket, "files/named.txt", []byte("name is not an id"))
	plant(t, cacheDir, idMalformed, bucket, "files/malformed.txt", nil)
	writeFile(t, filepath.Join(cacheDir, idMalformed+".json"), []byte(`{"bucket": "`+bucket+`", "key": `))
	j := plant(t, cacheDir, idOversized, bucket, "files/oversized.txt", []byte("oversized"))
	big, _ := json.Marshal(j)
	big = append(big[:len(big)-1], []byte(`, "pad": "`+strings.Repeat("x", 1<<20)+`"}`)...)
	writeFile(t, filepath.Join(cacheDir, idOversized+".json"), big)
	plant(t, cacheDir, idDataLink, bucket, "files/link.txt", nil)
	os.Remove(filepath.Join(cacheDir, idDataLink+".data"))
	if err := os.Symlink(victim, filepath.Join(cacheDir, idDataLink+".data")); err != nil {
		t.Fatal(err)
	}
	j = plant(t, cacheDir, idUploadElse, bucket, "files/upload.txt", []byte("aborts an upload elsewhere"))
	j.Uploads = append(j.Uploads, struct {
		Bucket string `json:"bucket"`
		Key    string `json:"key"`
		ID     string `json:"id"`
	}{other, "bob/big.iso", "some-upload-id"})
	writeJSON(t, filepath.Join(cacheDir, idUploadElse+".json"), j)
	// Files another user left (before the directory was made private).
	plant(t, cacheDir, idNobody, bucket, "files/nobody.txt", []byte("nobody's"))
	for _, n := range []string{idNobody + ".json", idNobody + ".data"} {
		if err := os.Chown(filepath.Join(cacheDir, n), 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	// A journal recovery may trust, beside them.
	plant(t, cacheDir, idTrusted, bucket, "files/trusted.txt", []byte("a journal of this cache"))

	newGateway(t, o)

	moved := []string{idOtherBucket, idOutsideWS, "planted", idMalformed, idOversized, idDataLink, idUploadElse, idNobody}
	conflicts := readDirNames(t, filepath.Join(cacheDir, "conflicts"))
	top := readDirNames(t, cacheDir)
	for _, id := range moved {
		for _, name := range []string{id + ".json", id + ".data"} {
			if !slices.Contains(conflicts, name) {
				t.Errorf("conflicts/ holds %v, want %s in it", conflicts, name)
			}
			if slices.Contains(top, name) {
				t.Errorf("the cache directory still holds %s, want it moved to conflicts/", name)
			}
		}
		path := filepath.Join(cacheDir, id+".json")
		if !strings.Contains(logs.String(), "journal not trusted; moved to conflicts") || !strings.Contains(logs.String(), "path="+path) {
			t.Errorf("no log line names %s as moved to conflicts; log:\n%s", path, logs.String())
		}
	}
	if slices.Contains(conflicts, idTrusted+".json") || !slices.Contains(top, idTrusted+".json") {
		t.Errorf("the journal of a configured workspace was moved aside (cache %v, conflicts %v), want it kept", top, conflicts)
	}
	if keys := objectKeys(t, other); len(keys) != 0 {
		t.Errorf("bucket %s holds %v, want nothing uploaded from a planted journal", other, keys)
	}
	for _, k := range objectKeys(t, bucket) {
		if k != "files/trusted.txt" {
			t.Errorf("bucket %s holds %s, want nothing uploaded from an untrusted journal", bucket, k)
		}
	}
	if got, err := os.ReadFile(victim); err != nil || string(got) != "the victim's bytes" {
		t.Errorf("victim file: got %q, %v, want it untouched", got, err)
	}
	if fi, err := os.Lstat(filepath.Join(cacheDir, "conflicts", idDataLink+".data")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("conflicts/%s.data: got %v, %v, want the symlink itself moved", idDataLink, fi, err)
	}
	for _, reason := range []string{"is not a local copy id", "unexpected end of JSON input", "over the limit", "in no configured workspace", "not a regular file", "not owned by the daemon's user"} {
		if !strings.Contains(logs.String(), reason) {
			t.Errorf("no log line gives the reason %q; log:\n%s", reason, logs.String())
		}
	}
}

// TestJournalTmpSymlink: a <id>.json.tmp symlink planted beside a live
// local copy is not followed by the next journal write; the victim it
// points to, outside or inside the cache, keeps its bytes.
func TestJournalTmpSymlink(t *testing.T) {
	for _, inside := range []bool{false, true} {
		name := "victim outside the cache"
		if inside {
			name = "victim inside the cache"
		}
		t.Run(name, func(t *testing.T) {
			o := testOptions(t)
			w := mountWorkspace(t, o)
			cacheDir := filepath.Join(o.TmpDir, "sftpgate")
			victim := filepath.Join(o.TmpDir, "victim")
			if inside {
				victim = filepath.Join(cacheDir, "victim")
			}
			const victimBytes = "root's precious file"
			writeFile(t, victim, []byte(victimBytes))

			f, err := os.Create(filepath.Join(w.dir, "a.txt"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write([]byte("first bytes")); err != nil {
				t.Fatal(err)
			}
			var id string
			for _, n := range readDirNames(t, cacheDir) {
				if s, ok := strings.CutSuffix(n, ".data"); ok {
					id = s
				}
			}
			if id == "" {
				t.Fatalf("no local copy in %s: %v", cacheDir, readDirNames(t, cacheDir))
			}
			tmp := filepath.Join(cacheDir, id+".json.tmp")
			if err := os.Symlink(victim, tmp); err != nil {
				t.Fatal(err)
			}
			// The close uploads and writes the journal (now clean).
			if err := f.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			if got, err := os.ReadFile(victim); err != nil || string(got) != victimBytes {
				t.Errorf("victim: got %q, %v, want %q untouched", got, err, victimBytes)
			}
			fi, err := os.Lstat(filepath.Join(cacheDir, id+".json"))
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("journal: got %v, %v, want a regular file", fi, err)
			}
			b, err := os.ReadFile(filepath.Join(cacheDir, id+".json"))
			if err != nil || !bytes.Contains(b, []byte(`"dirty":false`)) {
				t.Errorf("journal after close: got %s, %v, want the clean journal written", b, err)
			}
			if got, err := getObject(w.bucket, w.key("a.txt")); err != nil || string(got) != "first bytes" {
				t.Errorf("object: got %q, %v, want the bytes written", got, err)
			}
		})
	}
}

// TestLegacyCacheAdopted: with LegacyTmpDir (os.TempDir() when tmpDir is
// not configured), the local copies of an older version's cache are moved
// into the new one before recovery, on the same file system or not; an
// unsafe legacy directory is left alone and the start goes on.
func TestLegacyCacheAdopted(t *testing.T) {
	tests := []struct {
		name   string
		legacy func(t *testing.T) string
		mode   os.FileMode
		adopt  bool
	}{
		{"same file system", func(t *testing.T) string { return t.TempDir() }, 0o700, true},
		{"another file system", shmDir, 0o700, true},
		{"writable by others", func(t *testing.T) string { return t.TempDir() }, 0o777, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions(t)
			bucket := server.NewBucket(t, "legacy")
			o.ValidKey = func(b, key string) bool { return b == bucket }
			logger, logs := cacheLogger()
			o.Logger = logger
			o.LegacyTmpDir = tt.legacy(t)
			old := filepath.Join(o.LegacyTmpDir, "sftpgate")
			mkdirMode(t, filepath.Join(old, "conflicts"), 0o700)
			mkdirMode(t, old, tt.mode)
			plant(t, old, idTrusted, bucket, "files/legacy.txt", []byte("written before the upgrade"))
			writeFile(t, filepath.Join(old, "conflicts", idOutsideWS+".json"), []byte("{}"))
			writeFile(t, filepath.Join(old, "notes.txt"), []byte("not the cache's"))

			newGateway(t, o)

			cacheDir := filepath.Join(o.TmpDir, "sftpgate")
			top, conflicts := readDirNames(t, cacheDir), readDirNames(t, filepath.Join(cacheDir, "conflicts"))
			oldTop := readDirNames(t, old)
			if !tt.adopt {
				if slices.Contains(top, idTrusted+".json") || !slices.Contains(oldTop, idTrusted+".json") {
					t.Errorf("an unsafe legacy cache was adopted: new %v, old %v", top, oldTop)
				}
				if !strings.Contains(logs.String(), "is not adopted") {
					t.Errorf("no log line says the legacy cache is not adopted; log:\n%s", logs.String())
				}
				return
			}
			for _, n := range []string{idTrusted + ".json", idTrusted + ".data"} {
				if !slices.Contains(top, n) || slices.Contains(oldTop, n) {
					t.Errorf("%s: new cache %v, old %v, want it moved", n, top, oldTop)
				}
			}
			if !slices.Contains(conflicts, idOutsideWS+".json") {
				t.Errorf("conflicts/ holds %v, want the old conflicts/%s.json", conflicts, idOutsideWS)
			}
			if !slices.Equal(oldTop, []string{"notes.txt"}) {
				t.Errorf("old cache holds %v, want only notes.txt left", oldTop)
			}
			if got, err := os.ReadFile(filepath.Join(cacheDir, idTrusted+".data")); err != nil || string(got) != "written before the upgrade" {
				t.Errorf("adopted data file: got %q, %v", got, err)
			}
			if !strings.Contains(logs.String(), "adopted the local copies") || !strings.Contains(logs.String(), "files=3") {
				t.Errorf("no log line of the adoption (3 files); log:\n%s", logs.String())
			}
		})
	}
}

// shmDir returns a fresh directory on /dev/shm (tmpfs: another file system
// than the test's temporary directory), removed in cleanup.
func shmDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "sftpgate-legacy-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
