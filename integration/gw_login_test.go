package integration

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestGatewayLogin logs in with good and bad tokens, as a user would:
// password and keyboard-interactive, the host key an RSA key made with
// ssh-keygen as in the Cells documentation.
func TestGatewayLogin(t *testing.T) {
	t.Parallel()
	eachStore(t, testGatewayLogin)
}

func testGatewayLogin(t *testing.T, store string) {
	t.Parallel()
	g := startGateway(t, gwOptions{rsaHostKey: true, database: store})
	alice := g.addUser("alice", personalWS, commonWS)
	bob := g.addUser("bob", personalWS)
	g.addUser("carol", personalWS)
	expired := g.token("carol", "2s")
	expiredAt := time.Now().Add(2 * time.Second)
	dave := g.addUser("dave", personalWS)

	t.Run("password", func(t *testing.T) {
		c, err := g.login("alice", alice)
		if err != nil {
			t.Fatalf("login alice with her token: got %v, want success", err)
		}
		defer c.Close()
		sc := newSFTP(t, c)
		entries, err := sc.ReadDir("/")
		if err != nil {
			t.Fatalf("ReadDir /: %v", err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		slices.Sort(names)
		if want := []string{commonWS, personalWS}; !slices.Equal(names, want) {
			t.Errorf("ls /: got %q, want %q", names, want)
		}
	})

	t.Run("keyboard-interactive", func(t *testing.T) {
		var questions []string
		ki := ssh.KeyboardInteractive(func(name, instruction string, qs []string, echos []bool) ([]string, error) {
			questions = append(questions, qs...)
			answers := make([]string, len(qs))
			for i := range answers {
				answers[i] = bob
			}
			return answers, nil
		})
		c, err := g.dial("bob", ki)
		if err != nil {
			t.Fatalf("keyboard-interactive login bob: got %v, want success", err)
		}
		c.Close()
		if len(questions) != 1 {
			t.Errorf("got questions %q, want exactly one (the token)", questions)
		}
	})

	wrong := randomToken(t)
	g.secret(wrong)

	t.Run("keyboard-interactive wrong token", func(t *testing.T) {
		ki := ssh.KeyboardInteractive(func(name, instruction string, qs []string, echos []bool) ([]string, error) {
			answers := make([]string, len(qs))
			for i := range answers {
				answers[i] = wrong
			}
			return answers, nil
		})
		if c, err := g.dial("dave", ki); err == nil {
			c.Close()
			t.Errorf("keyboard-interactive login with a wrong token: got success, want refused")
		}
	})

	if time.Until(expiredAt) > 0 {
		time.Sleep(time.Until(expiredAt) + 500*time.Millisecond)
	}
	refused := []struct {
		name, user, token string
	}{
		{"wrong token", "alice", wrong},
		{"another user's token", "alice", bob},
		{"malformed token", "alice", "not-a-token"},
		{"empty token", "bob", ""},
		{"expired token", "carol", expired},
		{"unknown user", "mallory", alice},
		{"token with a trailing byte", "bob", bob + "x"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			c, err := g.login(tt.user, tt.token)
			if err == nil {
				c.Close()
				t.Fatalf("login %s: got success, want refused", tt.user)
			}
			if !strings.Contains(err.Error(), "unable to authenticate") {
				t.Errorf("login %s: got %v, want an authentication failure", tt.user, err)
			}
		})
	}

	t.Run("revoked while running", func(t *testing.T) {
		c, err := g.login("dave", dave)
		if err != nil {
			t.Fatalf("login dave before revoke: %v", err)
		}
		c.Close()
		id := tokenID(t, g, "dave")
		g.mustCLI("admin", "token", "revoke", id)
		if c, err := g.login("dave", dave); err == nil {
			c.Close()
			t.Errorf("login dave after `admin token revoke %s`: got success, want refused", id)
		}
	})

	t.Run("user deleted while running", func(t *testing.T) {
		g.mustCLI("admin", "user", "delete", "-u", "bob")
		if c, err := g.login("bob", bob); err == nil {
			c.Close()
			t.Errorf("login bob after `admin user delete`: got success, want refused")
		}
	})

	t.Run("still works after the failures of others", func(t *testing.T) {
		c, err := g.login("alice", alice)
		if err != nil {
			t.Fatalf("login alice: got %v, want success (3 failures, under the limit)", err)
		}
		c.Close()
	})

	// Every refusal is in the log (which cleanup checks for tokens).
	if got, want := strings.Count(g.logs(), "result=refused"), len(refused)+3; got < want {
		t.Errorf("log: got %d refused logins, want at least %d", got, want)
	}
}

// TestGatewayLoginLimiter locks one login+address pair out after 5
// failures: even the right token is refused, other logins are not, and
// the pair is let in again once the lockout is over. The log is JSON.
func TestGatewayLoginLimiter(t *testing.T) {
	t.Parallel()
	eachStore(t, testGatewayLoginLimiter)
}

func testGatewayLoginLimiter(t *testing.T, store string) {
	t.Parallel()
	g := startGateway(t, gwOptions{logJSON: true, database: store})
	erin := g.addUser("erin", personalWS)
	frank := g.addUser("frank", personalWS)

	for i := range 5 {
		wrong := randomToken(t)
		g.secret(wrong)
		if c, err := g.login("erin", wrong); err == nil {
			c.Close()
			t.Fatalf("failure %d: wrong token accepted", i+1)
		}
	}
	lockedAt := time.Now()
	if c, err := g.login("erin", erin); err == nil {
		c.Close()
		t.Errorf("after 5 failures: got the right token accepted, want refused for a while")
	}
	c, err := g.login("frank", frank)
	if err != nil {
		t.Errorf("frank from the same address while erin is locked out: got %v, want success", err)
	} else {
		c.Close()
	}

	// The first lockout lasts 30 s (auth.DefaultBackoff).
	time.Sleep(time.Until(lockedAt.Add(33 * time.Second)))
	c, err = g.login("erin", erin)
	if err != nil {
		t.Errorf("erin after the lockout: got %v, want success", err)
	} else {
		c.Close()
	}

	// Every line of the JSON log is a JSON object.
	sc := bufio.NewScanner(strings.NewReader(g.logs()))
	lines, logins := 0, 0
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("log line %q: not JSON: %v", sc.Text(), err)
			continue
		}
		lines++
		if rec["msg"] == "login" {
			logins++
		}
	}
	if lines == 0 || logins < 8 {
		t.Errorf("JSON log: got %d lines, %d login events, want one event per login attempt (8)", lines, logins)
	}
}

// TestGatewayLoginIPv6 serves on ::1 (bind "::1") and logs in over IPv6.
func TestGatewayLoginIPv6(t *testing.T) {
	t.Parallel()
	if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	} else {
		l.Close()
	}
	g := startGateway(t, gwOptions{bind: "::1"})
	tok := g.addUser("alice", personalWS)
	sc := g.mustSFTP("alice", tok)
	writeFile(t, sc, "/personal-files/v6.txt", "over IPv6")
	if b, err := readAll(sc, "/personal-files/v6.txt"); err != nil || b != "over IPv6" {
		t.Errorf("read back: got %q, %v, want %q", b, err, "over IPv6")
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(g.port)), time.Second); err == nil {
		c.Close()
		t.Errorf("bind ::1: got a connection on 127.0.0.1:%d, want it refused", g.port)
	}
}

// randomToken is a well-formed token that no store issued.
func randomToken(t *testing.T) string {
	t.Helper()
	var a, b [32]byte
	rand.Read(a[:])
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(a[:]) + "." + base64.RawURLEncoding.EncodeToString(b[:])
}

// tokenID returns the ID of login's only active token from `admin token list`.
func tokenID(t *testing.T, g *gateway, login string) string {
	t.Helper()
	out := g.mustCLI("admin", "token", "list", "-u", login).stdout
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) > 0 && f[len(f)-1] == "active" {
			ids = append(ids, f[0])
		}
	}
	if len(ids) != 1 {
		t.Fatalf("admin token list -u %s: got %q, want one active token", login, out)
	}
	return ids[0]
}
