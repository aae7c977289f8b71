package fusefs_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sftpgate/sftpgate/fusefs"
)

// Scenario of TestCrashRecovery, handed to TestCrashHelper.
const (
	envCrashTmp    = "SFTPGATE_FUSEFS_CRASH_TMP"
	envCrashMounts = "SFTPGATE_FUSEFS_CRASH_MOUNTS"
	envCrashBucket = "SFTPGATE_FUSEFS_CRASH_BUCKET"
	crashFile      = "unsynced.bin"
	crashSize      = 3<<20 + 4321
	crashSeed      = 99
)

// TestCrashRecovery kills a process that wrote a file through its mount
// without closing it, then starts a new Manager on the same directories:
// it must clean the stale mount and publish nothing (no close returned),
// keeping the copy as an interrupted upload cut to its durable prefix,
// which a resume completes.
//
// The killed process is its own client, as sftpgate is: at exit the
// kernel flushes the file it left open on its own mount and waits for an
// answer that its dead FUSE server will never give, so the process may stay
// in D state with its FUSE connection alive until that connection is
// aborted (/sys/fs/fuse/connections/<dev>/abort). The new Manager must cope
// with that; the test aborts the connection itself only to clean up after
// a failure.
func TestCrashRecovery(t *testing.T) {
	tests := []struct {
		name     string
		base     []byte // object content before the helper opens the file
		external []byte // content put behind the mount after the kill
	}{
		{name: "new file"},
		{name: "existing object", base: []byte("the object before the crash")},
		// The object changed after the crash: recovery must not overwrite
		// it.
		{name: "object changed meanwhile", base: []byte("the object before the crash"), external: []byte("written elsewhere after the crash")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions(t)
			bucket := server.NewBucket(t, "crash")
			key := "files/" + crashFile
			if tt.base != nil {
				putObject(t, bucket, key, tt.base)
			}
			conn, exited := crashHelper(t, o, bucket)
			got, err := getObject(bucket, key)
			if tt.base == nil && !isNoSuchKey(err) || tt.base != nil && !bytes.Equal(got, tt.base) {
				t.Fatalf("before recovery, object: got %q, %v, want it as before (nothing was closed)", got, err)
			}
			written := pattern(crashSeed, crashSize)
			before := tt.base
			if tt.external != nil {
				putObject(t, bucket, key, tt.external)
				before = tt.external
			}

			// The new Manager must not hang on the stale mount.
			started := make(chan struct{})
			var (
				g        *gateway
				startErr error
			)
			go func() {
				defer close(started)
				g, startErr = startGateway(t, o)
			}()
			select {
			case <-started:
			case <-time.After(45 * time.Second):
				t.Errorf("NewManager did not return within 45s: stuck on the stale mount of the killed process")
				if err := abortFuseConn(conn); err != nil {
					t.Errorf("abort connection %s: %v", conn, err)
				}
				select {
				case <-started:
				case <-time.After(30 * time.Second):
					t.Fatalf("NewManager still blocked after the connection was aborted")
				}
			}
			if startErr != nil {
				t.Fatal(startErr)
			}
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				t.Errorf("after NewManager, the killed process is still stuck: the stale FUSE connection %s was not aborted", conn)
			}

			g.grants.set("alice", fusefs.Workspace{Slug: "ws", Bucket: bucket, Prefix: "files/"})
			got, err = getObject(bucket, key)
			if before == nil && !isNoSuchKey(err) || before != nil && !bytes.Equal(got, before) {
				t.Errorf("object after recovery: got %d bytes, %v; want it as before the crash (recovery publishes nothing)", len(got), err)
			}
			dir := g.acquire(t, "alice")
			if tt.external == nil {
				resumeAndCheck(t, filepath.Join(dir, "ws", crashFile), bucket, key, written)
			}
			if m := mountsUnder(t, o.MountRoot); len(m) != 1 {
				t.Errorf("mounts under %s: got %q, want exactly the new one", o.MountRoot, m)
			}
		})
	}
}

// resumeAndCheck resumes the interrupted upload at path as a client does:
// the durable prefix it shows must be the start of want (a checkpoint ran
// before the kill: all of it, since it was contiguous); writing the rest
// from its size and closing must publish want.
func resumeAndCheck(t *testing.T, path, bucket, key string, want []byte) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat of the interrupted upload: %v", err)
	}
	n := fi.Size()
	if n != int64(len(want)) {
		t.Errorf("size of the interrupted upload: got %d, want %d (the whole durable prefix)", n, len(want))
	}
	if n > int64(len(want)) {
		t.Fatalf("size of the interrupted upload %d is past what was written (%d)", n, len(want))
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read the interrupted upload: %v", err)
	}
	if !bytes.Equal(got, want[:n]) {
		t.Fatalf("interrupted upload: got %d bytes, want the first %d of what was written (equal: false)", len(got), n)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open for the resume: %v", err)
	}
	if _, err := f.WriteAt(want[n:], n); err != nil {
		f.Close()
		t.Fatalf("resume write: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close of the resumed upload: %v", err)
	}
	checkObject(t, bucket, key, want)
}

// crashHelper runs TestCrashHelper on o's directories, waits until it has
// written its file, and kills it. It returns the helper's FUSE connection
// and a channel closed when the helper is gone.
func crashHelper(t *testing.T, o fusefs.Options, bucket string) (conn string, exited chan struct{}) {
	t.Helper()
	// Whatever happens, the dead process's mount must not outlive the test.
	t.Cleanup(func() { detachMounts(t, o.MountRoot) })
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		envCrashHelper+"=1",
		envMinIOEnd+"="+server.Endpoint,
		envMinIOAccess+"="+server.AccessKey,
		envMinIOSecret+"="+server.SecretKey,
		envCrashTmp+"="+o.TmpDir,
		envCrashMounts+"="+o.MountRoot,
		envCrashBucket+"="+bucket,
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	exited = make(chan struct{})
	ready := make(chan error, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		var seen []string
		for s.Scan() {
			if c, ok := strings.CutPrefix(s.Text(), "ready "); ok {
				conn = c
				ready <- nil
				io.Copy(io.Discard, stdout)
				return
			}
			seen = append(seen, s.Text())
		}
		ready <- fmt.Errorf("helper ended without \"ready\": %s", strings.Join(seen, "\n"))
	}()
	select {
	case err = <-ready:
	case <-time.After(90 * time.Second):
		err = fmt.Errorf("helper not ready after 90s")
	}
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("%v\nstderr: %s", err, stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill helper: %v", err)
	}
	go func() {
		cmd.Wait()
		close(exited)
	}()
	// Last resort, so that no process stays stuck on a dead mount.
	t.Cleanup(func() {
		select {
		case <-exited:
			return
		case <-time.After(5 * time.Second):
		}
		t.Errorf("the killed process is still stuck in exit: aborting FUSE connection %s", conn)
		if err := abortFuseConn(conn); err != nil {
			t.Errorf("abort connection %s: %v", conn, err)
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("the killed process is still there after the abort")
		}
	})
	select {
	case <-exited:
		t.Logf("the killed process exited at once")
	case <-time.After(3 * time.Second):
		t.Logf("the killed process is stuck in exit, flushing the file it held open on its own mount")
	}
	return conn, exited
}

// abortFuseConn aborts FUSE connection conn through fusectl, mounting it
// when needed.
func abortFuseConn(conn string) error {
	const ctl = "/sys/fs/fuse/connections"
	if conn == "" {
		return fmt.Errorf("unknown connection")
	}
	if _, err := os.Stat(filepath.Join(ctl, conn)); err != nil {
		if err := unix.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount fusectl: %w", err)
		}
	}
	return os.WriteFile(filepath.Join(ctl, conn, "abort"), []byte("1"), 0)
}

// TestCrashHelper is the process that TestCrashRecovery kills: it writes a
// file through its mount, says "ready" and waits for SIGKILL.
func TestCrashHelper(t *testing.T) {
	if os.Getenv(envCrashHelper) == "" {
		t.Skip("subprocess of TestCrashRecovery")
	}
	// Not testOptions: this process is killed, its t.TempDir would stay.
	o := testOptionsIn(os.Getenv(envCrashMounts), os.Getenv(envCrashTmp))
	g := newFakeGrants()
	g.set("alice", fusefs.Workspace{Slug: "ws", Bucket: os.Getenv(envCrashBucket), Prefix: "files/"})
	o.Grants = g
	o.Client, _ = newClient(t)
	ctx := context.Background()
	m, err := fusefs.NewManager(ctx, o)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	dir, _, err := m.Acquire(ctx, "alice")
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	// No O_TRUNC: an existing object is written over, in place.
	f, err := os.OpenFile(filepath.Join(dir, "ws", crashFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	if os.Getenv(envCrashStream) != "" {
		// TestStreamCrashRecovery: sequential, killed while streamed.
		writeChunks(t, f, pattern(crashSeed, streamCrashSize), 0)
		waitPartsSent(t, os.Getenv(envCrashBucket), "files/"+crashFile, -1)
		time.Sleep(2500 * time.Millisecond) // a checkpoint makes it durable
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			t.Fatalf("Stat(%s): %v", dir, err)
		}
		fmt.Printf("ready %d\n", unix.Minor(st.Dev))
		time.Sleep(2 * time.Minute)
		t.Errorf("not killed within 2 minutes")
		return
	}
	data := pattern(crashSeed, crashSize)
	// Two writes, the second one first, so the file is written out of order.
	if _, err := f.WriteAt(data[1<<20:], 1<<20); err != nil {
		t.Fatalf("WriteAt: %v", err)
	}
	if _, err := f.WriteAt(data[:1<<20], 0); err != nil {
		t.Fatalf("WriteAt: %v", err)
	}
	// Long enough for a checkpoint to make it all durable.
	time.Sleep(2500 * time.Millisecond)
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatalf("Stat(%s): %v", dir, err)
	}
	fmt.Printf("ready %d\n", unix.Minor(st.Dev))
	// Killed here; the deadline only bounds a helper whose parent vanished.
	time.Sleep(2 * time.Minute)
	t.Errorf("not killed within 2 minutes")
}
