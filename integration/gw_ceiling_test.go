package integration

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// The SFTP ceiling of the machine: the same client (pkg/sftp over
// golang.org/x/crypto/ssh, 64 requests in flight) against a pkg/sftp
// request server, in a process of its own like the daemon, whose files are
// memory: no file system, no store, no gateway. What the gateway reaches
// is read against it.

// memFile is a file of size zero bytes that reads for free and drops
// writes.
type memFile struct{ size int64 }

func (m memFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= m.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), m.size-off))
	clear(p[:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (memFile) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

// memHandlers serves memFile for every path.
type memHandlers struct{ size int64 }

func (h memHandlers) Fileread(*sftp.Request) (io.ReaderAt, error)  { return memFile{h.size}, nil }
func (h memHandlers) Filewrite(*sftp.Request) (io.WriterAt, error) { return memFile{h.size}, nil }
func (h memHandlers) Filecmd(*sftp.Request) error                  { return nil }
func (h memHandlers) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	return memLister{memInfo{h.size}}, nil
}

type memLister []fs.FileInfo

func (l memLister) ListAt(p []fs.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	return copy(p, l[off:]), nil
}

type memInfo struct{ size int64 }

func (i memInfo) Name() string       { return "mem" }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return 0o644 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

// envMemSFTP, set to a file size, makes the test binary serve memory
// SFTP (serveMemSFTP) instead of running tests.
const envMemSFTP = "SFTPGATE_TEST_MEMSFTP"

// memServer is a memory SFTP server process.
type memServer struct {
	addr string
	pid  int
}

// startMemSFTP starts this test binary as a memory SFTP server on
// 127.0.0.1 (files of size bytes, any password) in a process of its own,
// like the daemon, and stops it when the benchmark ends.
func startMemSFTP(b *testing.B, size int64) memServer {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envMemSFTP+"="+strconv.FormatInt(size, 10))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start the memory SFTP server: %v", err)
	}
	b.Cleanup(func() {
		stdin.Close() // it exits when its stdin closes
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		b.Fatalf("memory SFTP server: %q, %v", line, err)
	}
	return memServer{addr: addr, pid: cmd.Process.Pid}
}

// serveMemSFTP is the memory SFTP server process: it prints
// "listening <addr>" and serves until its stdin closes.
func serveMemSFTP() {
	size, err := strconv.ParseInt(os.Getenv(envMemSFTP), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "memory SFTP server:", err)
		os.Exit(2)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		panic(err)
	}
	cfg := &ssh.ServerConfig{PasswordCallback: func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(signer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Printf("listening %s\n", l.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	h := memHandlers{size}
	for {
		nc, err := l.Accept()
		if err != nil {
			os.Exit(0)
		}
		go serveMemConn(nc, cfg, h)
	}
}

func serveMemConn(nc net.Conn, cfg *ssh.ServerConfig, h memHandlers) {
	defer nc.Close()
	_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		ch, chReqs, err := nch.Accept()
		if err != nil {
			continue
		}
		go func() {
			for req := range chReqs {
				req.Reply(req.Type == "subsystem", nil)
			}
		}()
		go func() {
			rs := sftp.NewRequestServer(ch, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h},
				sftp.WithRSMaxTxPacket(benchLargePacket))
			rs.Serve()
			rs.Close()
		}()
	}
}

// benchCeiling uploads and downloads benchFileSize bytes to and from the
// memory SFTP server with the benchmark's client (options added); the
// "daemon" CPU of the result is the memory server's.
func benchCeiling(b *testing.B, mem memServer, opts ...sftp.ClientOption) transferRates {
	b.Helper()
	c, err := ssh.Dial("tcp", mem.addr, &ssh.ClientConfig{
		User: "bench", Auth: []ssh.AuthMethod{ssh.Password("x")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: dialTimeout,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sc, err := newSFTPClient(c, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	var r transferRates
	server, client := procCPU(b, mem.pid), selfCPU()
	start := time.Now()
	f, err := sc.Create("/up")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.ReadFromWithConcurrency(prng(1, benchFileSize), 64); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	r.up = rate(benchFileSize, time.Since(start))
	r.upDaemon, r.upClient = procCPU(b, mem.pid)-server, selfCPU()-client
	server, client = procCPU(b, mem.pid), selfCPU()
	start = time.Now()
	f, err = sc.Open("/down")
	if err != nil {
		b.Fatal(err)
	}
	n, err := f.WriteTo(io.Discard)
	f.Close()
	if err != nil || n != benchFileSize {
		b.Fatalf("memory download: %d bytes, %v", n, err)
	}
	r.down = rate(benchFileSize, time.Since(start))
	r.downDaemon, r.downClient = procCPU(b, mem.pid)-server, selfCPU()-client
	return r
}
