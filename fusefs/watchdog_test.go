package fusefs

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// statLine builds a /proc/<pid>/stat line: comm, state, flags (field 9),
// threads (20), start time (22) and pending signals (31); the other
// fields as a real line has them.
func statLine(comm, state, flags, threads, start, pending string) string {
	f := []string{"1234", "(" + comm + ")", state, "1", "1234", "1234", "0", "-1", flags,
		"98", "0", "0", "0", "0", "0", "0", "0", "20", "0", threads, "0", start,
		"3133440", "361", "18446744073709551615", "1", "2", "3", "0", "0", pending,
		"0", "0", "0", "0", "0", "0", "17", "1", "0", "0", "0", "0", "0", "1", "2", "3", "4", "5", "6", "0"}
	return strings.Join(f, " ") + "\n"
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    ProcStat
		wantErr bool
		exiting bool
		done    bool
	}{
		{
			name: "running",
			line: statLine("sftpgate", "S", "4194560", "12", "104320", "0"),
			want: ProcStat{Comm: "sftpgate", State: 'S', Flags: 4194560, Threads: 12, StartTime: 104320},
		},
		{
			name: "comm with spaces and parentheses",
			line: statLine("a) S 1 (b c) ) Z", "R", "0", "3", "99", "0"),
			want: ProcStat{Comm: "a) S 1 (b c) ) Z", State: 'R', Threads: 3, StartTime: 99},
		},
		{
			name: "empty comm", line: statLine("", "S", "0", "1", "7", "0"),
			want: ProcStat{State: 'S', Threads: 1, StartTime: 7},
		},
		{
			name:    "main thread exiting (PF_EXITING), stuck in a flush",
			line:    statLine("sftpgate", "D", "4194308", "2", "104320", "0"),
			want:    ProcStat{Comm: "sftpgate", State: 'D', Flags: 4194308, Threads: 2, StartTime: 104320},
			exiting: true,
		},
		{
			name:    "SIGKILL pending, waiting for a FUSE answer",
			line:    statLine("sftpgate", "D", "4194304", "1", "104320", "256"),
			want:    ProcStat{Comm: "sftpgate", State: 'D', Flags: 4194304, Threads: 1, StartTime: 104320, Pending: 256},
			exiting: true,
		},
		{
			name:    "zombie main thread, another thread stuck",
			line:    statLine("sftpgate", "Z", "4194316", "2", "104320", "0"),
			want:    ProcStat{Comm: "sftpgate", State: 'Z', Flags: 4194316, Threads: 2, StartTime: 104320},
			exiting: true,
		},
		{
			name:    "zombie, every thread done",
			line:    statLine("sftpgate", "Z", "4194316", "1", "104320", "0"),
			want:    ProcStat{Comm: "sftpgate", State: 'Z', Flags: 4194316, Threads: 1, StartTime: 104320},
			exiting: true, done: true,
		},
		{name: "no parenthesis", line: "1234 sftpgate S 1 2 3", wantErr: true},
		{name: "truncated", line: "1234 (sftpgate) S 1 1234 1234 0 -1 4194304 98", wantErr: true},
		{name: "state not one letter", line: statLine("x", "SS", "0", "1", "7", "0"), wantErr: true},
		{name: "flags not a number", line: statLine("x", "S", "-", "1", "7", "0"), wantErr: true},
		{name: "start time not a number", line: statLine("x", "S", "0", "1", "7x", "0"), wantErr: true},
		{name: "empty", line: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcStat([]byte(tt.line))
			if tt.wantErr {
				if !errors.Is(err, errBadStat) {
					t.Errorf("ParseProcStat(%q): got %+v, %v, want errBadStat", tt.line, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseProcStat(%q): got %+v, %v, want %+v", tt.line, got, err, tt.want)
			}
			if got.Exiting() != tt.exiting || got.Done() != tt.done {
				t.Errorf("Exiting, Done: got %v, %v, want %v, %v", got.Exiting(), got.Done(), tt.exiting, tt.done)
			}
		})
	}
}

func TestReadProcStatSelf(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	st, err := ReadProcStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.Comm != "sleep" || st.StartTime == 0 || st.Threads != 1 || st.Exiting() {
		t.Errorf("ReadProcStat(sleep): got %+v, want comm sleep, a start time, one thread, not exiting", st)
	}
}

func TestParseFuseMounts(t *testing.T) {
	const mountinfo = `22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
36 22 0:32 / /sys/fs/fuse/connections rw,relatime - fusectl fusectl rw
40 22 0:40 / /srv/mounts/alice rw,nosuid,nodev,relatime - fuse.sftpgate sftpgate:alice rw,user_id=0,group_id=0,max_read=262144
41 22 0:41 / /srv/mounts/.readonly/bob rw,nosuid,nodev,relatime - fuse.sftpgate sftpgate:bob rw,user_id=0,group_id=0
42 22 0:52 / /srv/mounts/carol\040x rw,nosuid,nodev,relatime shared:9 - fuse.sftpgate sftpgate:carol\040x rw,user_id=0
43 22 0:53 / /srv/mounts/dave rw,nosuid,nodev,relatime - fuse.sshfs dave@host: rw,user_id=0
44 22 0:54 / /srv/mountsX/eve rw,relatime - fuse.sftpgate sftpgate:eve rw
45 22 0:55 / /srv/mounts/frank rw,relatime - fuse.sftpgate other:frank rw
`
	got, err := parseFuseMounts(strings.NewReader(mountinfo), "/srv/mounts")
	if err != nil {
		t.Fatal(err)
	}
	want := []fuseMount{
		{id: "41", dir: "/srv/mounts/.readonly/bob", fstype: "fuse.sftpgate", source: "sftpgate:bob", minor: "41"},
		{id: "42", dir: "/srv/mounts/carol x", fstype: "fuse.sftpgate", source: "sftpgate:carol x", minor: "52"},
		{id: "40", dir: "/srv/mounts/alice", fstype: "fuse.sftpgate", source: "sftpgate:alice", minor: "40"},
		{id: "45", dir: "/srv/mounts/frank", fstype: "fuse.sftpgate", source: "other:frank", minor: "55"},
		{id: "43", dir: "/srv/mounts/dave", fstype: "fuse.sshfs", source: "dave@host:", minor: "53"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d mounts %+v, want %d", len(got), got, len(want))
	}
	byDir := map[string]fuseMount{}
	for _, m := range got {
		byDir[m.dir] = m
	}
	for _, w := range want {
		if g := byDir[w.dir]; g != w {
			t.Errorf("%s: got %+v, want %+v", w.dir, g, w)
		}
	}
	for i := 1; i < len(got); i++ {
		if len(got[i].dir) > len(got[i-1].dir) {
			t.Errorf("order: %s before %s, want the deepest first", got[i-1].dir, got[i].dir)
		}
	}
	own := map[string]bool{"/srv/mounts/alice": true, "/srv/mounts/.readonly/bob": true, "/srv/mounts/carol x": true}
	for _, m := range got {
		if m.own() != own[m.dir] {
			t.Errorf("%s own(): got %v, want %v", m.dir, m.own(), own[m.dir])
		}
	}
	all, err := parseFuseMounts(strings.NewReader(mountinfo), "")
	if err != nil || len(all) != 6 {
		t.Errorf(`root "": got %d mounts, %v, want the 6 FUSE ones (not fusectl)`, len(all), err)
	}
}

// TestRunWatchdogEnds: the watchdog returns once the daemon is gone (here
// with no mount to free), at once for a pid whose start time is not the
// daemon's (a reused pid), and when told to stop.
func TestRunWatchdogEnds(t *testing.T) {
	start := func(t *testing.T) (*exec.Cmd, ProcStat) {
		cmd := exec.Command("sleep", "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		st, err := ReadProcStat(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		return cmd, st
	}
	run := func(ctx context.Context, c WatchdogConfig) chan error {
		c.MountRoot, c.Interval = t.TempDir(), 10*time.Millisecond
		ch := make(chan error, 1)
		go func() { ch <- RunWatchdog(ctx, c) }()
		return ch
	}
	wait := func(t *testing.T, ch chan error, within time.Duration) {
		t.Helper()
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("RunWatchdog: got %v, want nil", err)
			}
		case <-time.After(within):
			t.Fatalf("RunWatchdog still running after %v", within)
		}
	}
	t.Run("daemon killed", func(t *testing.T) {
		cmd, st := start(t)
		ch := run(context.Background(), WatchdogConfig{Pid: cmd.Process.Pid, StartTime: st.StartTime})
		select {
		case err := <-ch:
			t.Fatalf("RunWatchdog returned %v while the daemon runs", err)
		case <-time.After(200 * time.Millisecond):
		}
		cmd.Process.Kill()
		wait(t, ch, 5*time.Second) // a zombie until reaped: exiting already
		cmd.Wait()
	})
	t.Run("reused pid", func(t *testing.T) {
		cmd, st := start(t)
		wait(t, run(context.Background(), WatchdogConfig{Pid: cmd.Process.Pid, StartTime: st.StartTime + 1}), 5*time.Second)
	})
	t.Run("stopped", func(t *testing.T) {
		cmd, st := start(t)
		ctx, cancel := context.WithCancel(context.Background())
		ch := run(ctx, WatchdogConfig{Pid: cmd.Process.Pid, StartTime: st.StartTime})
		cancel()
		wait(t, ch, 5*time.Second)
	})
}
