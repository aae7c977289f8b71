package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/pkg/sftp"
)

// TestGatewayFileOps renames files and directories, makes and removes
// directories and files, sets mtimes, over SFTP, and checks each result
// in MinIO directly and on the server's mount.
func TestGatewayFileOps(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", personalWS)
	sc := g.mustSFTP("alice", tok)
	bucket := g.personalBucket
	key := func(p string) string { return personalKey("alice", p) }
	put := func(p string, data string) {
		t.Helper()
		f, err := sc.Create("/personal-files/" + p)
		if err != nil {
			t.Fatalf("create %s: %v", p, err)
		}
		if _, err := f.Write([]byte(data)); err != nil {
			t.Fatalf("write %s: %v", p, err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close %s: %v", p, err)
		}
	}
	exists := func(k string) bool {
		t.Helper()
		_, err := statObject(g.minio, bucket, k)
		if err != nil && !isNotFound(err) {
			t.Fatalf("stat %s: %v", k, err)
		}
		return err == nil
	}

	t.Run("mkdir", func(t *testing.T) {
		for _, d := range []string{"d", "d/sub", "empty"} {
			if err := sc.Mkdir("/personal-files/" + d); err != nil {
				t.Fatalf("mkdir %s: %v", d, err)
			}
		}
		if !exists(key("empty/")) {
			t.Errorf("mkdir empty: got no marker object %s/, want one", key("empty"))
		}
		fi, err := sc.Stat("/personal-files/empty")
		if err != nil || !fi.IsDir() {
			t.Errorf("stat empty: got %v, %v, want a directory", fi, err)
		}
		if err := sc.Mkdir("/personal-files/empty"); err == nil {
			t.Errorf("mkdir of an existing directory: got success, want an error")
		}
	})

	t.Run("mount shows uploads", func(t *testing.T) {
		put("d/a.txt", "hello a")
		put("d/sub/b.txt", "hello b")
		put("top.txt", "top")
		entries, err := os.ReadDir(filepath.Join(g.mounts, "alice", personalWS))
		if err != nil {
			t.Fatalf("ls the mount on the server: %v", err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		slices.Sort(names)
		if want := []string{"d", "empty", "top.txt"}; !slices.Equal(names, want) {
			t.Errorf("ls %s/alice/%s: got %q, want %q", g.mounts, personalWS, names, want)
		}
		b, err := os.ReadFile(filepath.Join(g.mounts, "alice", personalWS, "d", "sub", "b.txt"))
		if err != nil || string(b) != "hello b" {
			t.Errorf("cat on the mount: got %q, %v, want %q", b, err, "hello b")
		}
	})

	t.Run("rename file", func(t *testing.T) {
		if err := sc.Rename("/personal-files/top.txt", "/personal-files/d/top2.txt"); err != nil {
			t.Fatalf("rename: %v", err)
		}
		if exists(key("top.txt")) || !exists(key("d/top2.txt")) {
			t.Errorf("after rename: got top.txt %v, d/top2.txt %v, want only the new key", exists(key("top.txt")), exists(key("d/top2.txt")))
		}
		if _, err := sc.Stat("/personal-files/top.txt"); !os.IsNotExist(err) {
			t.Errorf("stat old name: got %v, want not exist", err)
		}
	})

	t.Run("rename directory", func(t *testing.T) {
		if err := sc.Rename("/personal-files/d", "/personal-files/e"); err != nil {
			t.Fatalf("rename dir: %v", err)
		}
		got := listKeys(t, g, bucket, key(""))
		want := []string{key("e/a.txt"), key("e/sub/b.txt"), key("e/top2.txt"), key("empty/")}
		// A directory marker for e/ or e/sub/ may or may not be kept.
		got = slices.DeleteFunc(got, func(k string) bool { return k == key("e/") || k == key("e/sub/") })
		if !slices.Equal(got, want) {
			t.Errorf("keys after rename d → e: got %q, want %q", got, want)
		}
		b, err := readAll(sc, "/personal-files/e/sub/b.txt")
		if err != nil || b != "hello b" {
			t.Errorf("read e/sub/b.txt: got %q, %v, want %q", b, err, "hello b")
		}
	})

	t.Run("remove and rmdir", func(t *testing.T) {
		if err := sc.RemoveDirectory("/personal-files/e"); err == nil {
			t.Errorf("rmdir of a non-empty directory: got success, want an error")
		}
		if err := sc.Remove("/personal-files/e/a.txt"); err != nil {
			t.Errorf("rm: %v", err)
		}
		if exists(key("e/a.txt")) {
			t.Errorf("after rm: object %s still there", key("e/a.txt"))
		}
		if err := sc.Remove("/personal-files/e/nope"); !os.IsNotExist(err) {
			t.Errorf("rm missing file: got %v, want not exist", err)
		}
		if err := sc.RemoveDirectory("/personal-files/empty"); err != nil {
			t.Errorf("rmdir empty: %v", err)
		}
		if exists(key("empty/")) {
			t.Errorf("after rmdir: marker %s still there", key("empty/"))
		}
		if _, err := sc.Stat("/personal-files/empty"); !os.IsNotExist(err) {
			t.Errorf("stat removed dir: got %v, want not exist", err)
		}
	})

	t.Run("setstat mtime", func(t *testing.T) {
		mtime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
		if err := sc.Chtimes("/personal-files/e/top2.txt", mtime, mtime); err != nil {
			t.Fatalf("chtimes: %v", err)
		}
		info, err := statObject(g.minio, bucket, key("e/top2.txt"))
		if err != nil {
			t.Fatal(err)
		}
		v := info.UserMetadata["Mtime"]
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs != float64(mtime.Unix()) {
			t.Errorf("X-Amz-Meta-Mtime: got %q, want %d", v, mtime.Unix())
		}
		fi, err := sc.Stat("/personal-files/e/top2.txt")
		if err != nil || !fi.ModTime().Equal(mtime) {
			t.Errorf("stat mtime: got %v, %v, want %v", fi.ModTime(), err, mtime)
		}
		if fi.Size() != 3 {
			t.Errorf("size after setstat: got %d, want 3", fi.Size())
		}
	})
}

// TestGatewayListing lists a directory of 10,000 objects put directly in
// MinIO.
func TestGatewayListing(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gwOptions{})
	tok := g.addUser("alice", commonWS)

	const n, workers = 10000, 16
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				body := strconv.Itoa(i)
				_, err := g.minio.Client.PutObject(ctx, g.commonBucket, fmt.Sprintf("many/f%05d", i),
					strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("put objects: %v", err)
	}

	sc := g.mustSFTP("alice", tok)
	start := time.Now()
	entries, err := sc.ReadDir("/common-files/many")
	if err != nil {
		t.Fatalf("ReadDir: %v", err)
	}
	t.Logf("listed %d entries in %v", len(entries), time.Since(start).Round(time.Millisecond))
	if len(entries) != n {
		t.Fatalf("ReadDir: got %d entries, want %d", len(entries), n)
	}
	seen := make(map[string]bool, n)
	for _, e := range entries {
		i, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "f"))
		if err != nil || e.Size() != int64(len(strconv.Itoa(i))) || e.IsDir() {
			t.Errorf("entry %q: size %d dir %v, want file f%05d of %d bytes", e.Name(), e.Size(), e.IsDir(), i, len(strconv.Itoa(i)))
		}
		seen[e.Name()] = true
	}
	if len(seen) != n {
		t.Errorf("ReadDir: got %d distinct names, want %d", len(seen), n)
	}
}

// listKeys lists the keys under prefix in MinIO, sorted.
func listKeys(t testing.TB, g *gateway, bucket, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var keys []string
	for o := range g.minio.Client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s/%s: %v", bucket, prefix, o.Err)
		}
		keys = append(keys, o.Key)
	}
	slices.Sort(keys)
	return keys
}

// readAll reads a whole (small) file over SFTP.
func readAll(sc *sftp.Client, path string) (string, error) {
	f, err := sc.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b strings.Builder
	_, err = f.WriteTo(&b)
	return b.String(), err
}
