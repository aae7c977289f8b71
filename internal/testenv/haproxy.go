package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// HAProxy is a running HAProxy load balancer in TCP mode, in front of
// SFTP backends, owned by a test: it sends each backend a PROXY protocol
// v2 header and checks the backends' health by reading their SSH version
// line (the check sends the header too).
type HAProxy struct {
	// Addr is the frontend's host:port on 127.0.0.1.
	Addr string
	// Config is the configuration file HAProxy runs with.
	Config string

	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// haproxyStartTimeout bounds the wait for HAProxy to serve through a
// healthy backend.
const haproxyStartTimeout = 30 * time.Second

// HAProxyBinary returns the HAProxy binary: $SFTPGATE_HAPROXY_BIN, else
// haproxy in PATH, else /usr/sbin/haproxy (Debian's package); "" if none
// exists.
func HAProxyBinary() string {
	if p := os.Getenv("SFTPGATE_HAPROXY_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	return ""
}

// HAProxyConfig returns the configuration of a TCP load balancer listening
// on bind (host:port) in front of backends (host:port each): PROXY
// protocol v2 to every backend, health checks every 2 s that expect the
// SSH version line, least-connections balancing. It is the configuration
// the README's "Running a cluster" shows.
func HAProxyConfig(bind string, backends []string) string {
	var b strings.Builder
	b.WriteString(`global
    maxconn 4096

defaults
    mode tcp
    timeout connect 5s
    # SFTP sessions stay idle for long: the gateway's idleTimeout ends them.
    timeout client 1h
    timeout server 1h
    timeout check 5s
    # A connection a stopping node refuses goes to another node.
    retries 2
    option redispatch

frontend sftp
    bind ` + bind + `
    default_backend sftpgate

backend sftpgate
    balance leastconn
    option tcp-check
    tcp-check connect default
    tcp-check expect rstring ^SSH-2\.0-
`)
	for i, be := range backends {
		fmt.Fprintf(&b, "    server node%d %s send-proxy-v2 check check-send-proxy inter 2s fall 2 rise 1\n", i+1, be)
	}
	return b.String()
}

// StartHAProxy starts HAProxy on a free 127.0.0.1 port in front of
// backends with HAProxyConfig, in a temporary directory, and waits until
// a connection through it reaches a backend's SSH version line. Cleanup
// stops it. Without an HAProxy binary the test is skipped, unless
// $SFTPGATE_REQUIRE_HAPROXY is set (CI sets it), which fails it.
func StartHAProxy(t testing.TB, backends []string) *HAProxy {
	t.Helper()
	bin := HAProxyBinary()
	if bin == "" {
		if os.Getenv("SFTPGATE_REQUIRE_HAPROXY") != "" {
			t.Fatal("testenv: no haproxy binary (PATH, /usr/sbin/haproxy or $SFTPGATE_HAPROXY_BIN) and SFTPGATE_REQUIRE_HAPROXY is set: install it with `make tools`")
		}
		t.Skip("testenv: no haproxy binary (PATH, /usr/sbin/haproxy or $SFTPGATE_HAPROXY_BIN): install it with `make tools`; set SFTPGATE_REQUIRE_HAPROXY=1 to fail instead")
	}
	dir := t.TempDir()
	var h *HAProxy
	var err error
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken meanwhile
		if h, err = startHAProxyOnce(bin, dir, backends); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return h
}

func startHAProxyOnce(bin, dir string, backends []string) (*HAProxy, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	h := &HAProxy{
		Addr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Config: filepath.Join(dir, fmt.Sprintf("haproxy-%d.cfg", port)),
		log:    filepath.Join(dir, fmt.Sprintf("haproxy-%d.log", port)),
		done:   make(chan struct{}),
	}
	if err := os.WriteFile(h.Config, []byte(HAProxyConfig(h.Addr, backends)), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.Command(bin, "-c", "-q", "-f", h.Config).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("testenv: haproxy -c %s: %v: %s", h.Config, err, out)
	}
	logf, err := os.Create(h.log)
	if err != nil {
		return nil, err
	}
	// -db: foreground, no daemon; -W would add a master process.
	h.cmd = exec.Command(bin, "-db", "-f", h.Config)
	h.cmd.Dir = dir
	h.cmd.Stdout = logf
	h.cmd.Stderr = logf
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("testenv: start haproxy: %w", err)
	}
	go func() {
		h.cmd.Wait()
		logf.Close()
		close(h.done)
	}()
	deadline := time.Now().Add(haproxyStartTimeout)
	for {
		select {
		case <-h.done:
			return nil, fmt.Errorf("testenv: haproxy exited at start: %s", h.Log())
		default:
		}
		err := h.probe()
		if err == nil {
			return h, nil
		}
		if time.Now().After(deadline) {
			h.Stop()
			return nil, fmt.Errorf("testenv: no backend reachable through haproxy after %v: %v\n%s", haproxyStartTimeout, err, h.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// probe connects through the balancer and reads a backend's SSH version
// line.
func (h *HAProxy) probe() error {
	c, err := net.DialTimeout("tcp", h.Addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("got %q, want an SSH version line", line)
	}
	return nil
}

// Log returns what HAProxy has written so far.
func (h *HAProxy) Log() string {
	b, _ := os.ReadFile(h.log)
	return string(b)
}

// Stop stops HAProxy (SIGTERM, then SIGKILL after 10 s) and waits for it
// to exit.
func (h *HAProxy) Stop() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.cmd.Process.Kill()
		<-h.done
	}
}
