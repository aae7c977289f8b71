package testenv

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// banner is a backend that reads a PROXY header, records it, and writes
// an SSH version line.
type banner struct {
	l net.Listener
	// mu guards the fields below.
	mu      sync.Mutex
	sources []string // client addresses of PROXY headers
	locals  int      // LOCAL headers, without a client address (health checks)
	none    int      // connections without a header
}

func startBanner(t *testing.T) *banner {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &banner{l: l}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				h, err := proxyproto.Read(bufio.NewReader(c))
				b.mu.Lock()
				switch {
				case err != nil:
					b.none++
				case h.Command.IsLocal():
					b.locals++
				default:
					src, _, _ := h.TCPAddrs()
					b.sources = append(b.sources, src.String())
				}
				b.mu.Unlock()
				c.Write([]byte("SSH-2.0-banner\r\n"))
				buf := make([]byte, 64)
				c.Read(buf) // until the peer closes
			}()
		}
	}()
	return b
}

func TestHAProxySendsClientAddress(t *testing.T) {
	be := startBanner(t)
	h := StartHAProxy(t, []string{be.l.Addr().String()})
	for _, local := range []string{"127.0.0.2", "127.0.0.3"} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", h.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || !strings.HasPrefix(line, "SSH-2.0-banner") {
			t.Fatalf("through haproxy from %s: got %q, %v, want the backend's version line", local, line, err)
		}
		ok := false
		for i := 0; i < 100 && !ok; i++ {
			be.mu.Lock()
			for _, s := range be.sources {
				ok = ok || strings.HasPrefix(s, local+":")
			}
			be.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
		if !ok {
			be.mu.Lock()
			t.Errorf("backend saw client addresses %q, want one from %s", be.sources, local)
			be.mu.Unlock()
		}
	}
	// The health checks (every 2 s) send a LOCAL header: sftpd tells
	// them by that, and a gateway that requires a header passes them.
	checked := false
	for i := 0; i < 100 && !checked; i++ {
		be.mu.Lock()
		checked = be.locals > 0
		be.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if be.none != 0 || be.locals == 0 {
		t.Errorf("health checks: got %d without a header and %d LOCAL headers, want 0 and at least 1", be.none, be.locals)
	}
}

// TestHAProxyConfigInREADME: the README's "Running a cluster" shows the
// configuration the tests run.
func TestHAProxyConfigInREADME(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	want := "```haproxy\n" + HAProxyConfig("0.0.0.0:22", []string{"10.0.0.11:2022", "10.0.0.12:2022", "10.0.0.13:2022"}) + "```\n"
	if !strings.Contains(string(readme), want) {
		t.Errorf("README.md: no block\n%s", want)
	}
}
