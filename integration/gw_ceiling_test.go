package integration

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"io/fs"
	"net"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// The SFTP ceiling of the machine: the same client (pkg/sftp over
// golang.org/x/crypto/ssh, 64 requests in flight) against a pkg/sftp
// request server in this process whose file is memory: no file system,
// no store, no gateway. What the gateway reaches is read against it.

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

// startMemSFTP serves SFTP on 127.0.0.1 from memory (files of size
// bytes), with any password, until the benchmark ends. It returns the
// address.
func startMemSFTP(b *testing.B, size int64) string {
	b.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		b.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PasswordCallback: func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(signer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	h := memHandlers{size}
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go serveMemConn(nc, cfg, h)
		}
	}()
	return l.Addr().String()
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

// benchCeiling uploads and downloads benchFileSize bytes to and from a
// memory SFTP server with the benchmark's client (options added).
func benchCeiling(b *testing.B, addr string, opts ...sftp.ClientOption) (up, down float64) {
	b.Helper()
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
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
	f, err := sc.Create("/up")
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := f.ReadFromWithConcurrency(prng(1, benchFileSize), 64); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	up = rate(benchFileSize, time.Since(start))
	f, err = sc.Open("/down")
	if err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	n, err := f.WriteTo(io.Discard)
	f.Close()
	if err != nil || n != benchFileSize {
		b.Fatalf("memory download: %d bytes, %v", n, err)
	}
	return up, rate(benchFileSize, time.Since(start))
}
