package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var tokenShape = regexp.MustCompile(`^[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}$`)

func TestMintCheckRoundTrip(t *testing.T) { eachStore(t, testMintCheckRoundTrip) }

func testMintCheckRoundTrip(t *testing.T, open opener) {
	ctx := context.Background()
	clk := newFakeClock()
	s, _ := open(t, WithClock(clk.Now))
	mustUser(t, s, "alice")
	secret, tok, err := s.MintToken(ctx, "alice", MintOptions{Expires: 28 * 24 * time.Hour, Label: "laptop"})
	if err != nil {
		t.Fatalf("MintToken: %v", err)
	}
	if !tokenShape.MatchString(secret) {
		t.Fatalf("token %q does not match %v", secret, tokenShape)
	}
	if len(tok.ID) != 12 {
		t.Errorf("got ID %q, want 12 hex characters", tok.ID)
	}
	if _, err := hex.DecodeString(tok.ID); err != nil {
		t.Errorf("ID %q is not hex: %v", tok.ID, err)
	}
	if got, want := tok.HardExpires, clk.Now().Add(28*24*time.Hour); !got.Equal(want) {
		t.Errorf("got HardExpires %v, want %v", got, want)
	}
	if !tok.Expires.Equal(tok.HardExpires) {
		t.Errorf("got Expires %v, want HardExpires %v (no refresh)", tok.Expires, tok.HardExpires)
	}
	if got := tok.State(clk.Now()); got != StateActive {
		t.Errorf("got state %q, want %q", got, StateActive)
	}

	clk.Advance(time.Minute)
	if err := s.Check(ctx, "alice", secret, "192.0.2.1:50000"); err != nil {
		t.Fatalf("Check: %v", err)
	}
	ts, err := s.Tokens(ctx, "alice")
	if err != nil || len(ts) != 1 {
		t.Fatalf("Tokens: got %v, %v; want one token", ts, err)
	}
	got := ts[0]
	if got.ID != tok.ID || got.Owner != "alice" || got.Label != "laptop" || got.Revoked {
		t.Errorf("got %+v, want id %s owner alice label laptop", got, tok.ID)
	}
	if !got.LastUsed.Equal(clk.Now()) {
		t.Errorf("got LastUsed %v, want %v", got.LastUsed, clk.Now())
	}
	if !got.Created.Equal(tok.Created) || !got.HardExpires.Equal(tok.HardExpires) {
		t.Errorf("got created/hard %v/%v, want %v/%v", got.Created, got.HardExpires, tok.Created, tok.HardExpires)
	}

	// Two tokens never look alike.
	secret2, tok2 := mustMint(t, s, "alice", MintOptions{Expires: time.Hour})
	if secret2 == secret || tok2.ID == tok.ID {
		t.Errorf("second token repeats the first")
	}
	all, err := s.Tokens(ctx, "")
	if err != nil || len(all) != 2 {
		t.Errorf("Tokens(\"\"): got %d tokens, %v; want 2", len(all), err)
	}
}

func TestMintTokenErrors(t *testing.T) { eachStore(t, testMintTokenErrors) }

func testMintTokenErrors(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t)
	mustUser(t, s, "alice")
	tests := []struct {
		name  string
		login string
		o     MintOptions
		want  error
	}{
		{"unknown user", "bob", MintOptions{Expires: time.Hour}, ErrNotFound},
		{"zero expiry", "alice", MintOptions{}, ErrInvalid},
		{"negative expiry", "alice", MintOptions{Expires: -time.Hour}, ErrInvalid},
		{"absurd expiry", "alice", MintOptions{Expires: 200 * 365 * 24 * time.Hour}, ErrInvalid},
		{"negative refresh", "alice", MintOptions{Expires: time.Hour, Refresh: -1}, ErrInvalid},
		{"control char label", "alice", MintOptions{Expires: time.Hour, Label: "a\nb"}, ErrInvalid},
		{"long label", "alice", MintOptions{Expires: time.Hour, Label: strings.Repeat("x", MaxLabelLen+1)}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret, _, err := s.MintToken(ctx, tt.login, tt.o)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if secret != "" {
				t.Errorf("got secret on error")
			}
		})
	}
	if ts, _ := s.Tokens(ctx, ""); len(ts) != 0 {
		t.Errorf("got %d tokens after failed mints, want 0", len(ts))
	}
	_, _, err := s.MintToken(ctx, "bob", MintOptions{Expires: time.Hour})
	if got, want := err.Error(), `auth: user "bob": not found`; got != want {
		t.Errorf("got message %q, want %q", got, want)
	}
}

// TestCheckReasons produces every refusal reason by a real scenario.
func TestCheckReasons(t *testing.T) { eachStore(t, testCheckReasons) }

func testCheckReasons(t *testing.T, open opener) {
	ctx := context.Background()
	clk := newFakeClock()
	s, _ := open(t, WithClock(clk.Now), WithLimiter(LimiterConfig{MaxFailures: 3, MaxAddrFailures: 1000}))
	mustUser(t, s, "alice")
	mustUser(t, s, "bob")
	mustUser(t, s, "carol")

	good, _ := mustMint(t, s, "alice", MintOptions{Expires: 24 * time.Hour})
	revoked, revTok := mustMint(t, s, "alice", MintOptions{Expires: 24 * time.Hour})
	if err := s.RevokeToken(ctx, revTok.ID); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	expiring, _ := mustMint(t, s, "alice", MintOptions{Expires: time.Minute})
	carols, _ := mustMint(t, s, "carol", MintOptions{Expires: 24 * time.Hour})
	if err := s.DeleteUser(ctx, "carol"); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	clk.Advance(2 * time.Minute)

	// A well-signed token the store does not hold: signed with the same
	// key, never inserted (as if its row were lost).
	random := make([]byte, tokenRandLen)
	rand.Read(random)
	unknown := signToken(s.key, random)
	// Right shape, signed with another key.
	otherKey := bytes.Repeat([]byte{7}, hmacKeyLen)
	forged := signToken(otherKey, random)
	// Flip one character of the signature of a good token.
	tampered := good[:TokenLen-2] + flip(good[TokenLen-2]) + good[TokenLen-1:]

	tests := []struct {
		name, login, secret, remote string
		want                        string
	}{
		{"ok", "alice", good, "192.0.2.1:1", ""},
		{"empty", "alice", "", "192.0.2.2:1", string(ReasonMalformed)},
		{"short", "alice", good[:50], "192.0.2.2:1", string(ReasonMalformed)},
		{"padding", "alice", good + "=", "192.0.2.2:1", string(ReasonMalformed)},
		{"no dot", "alice", strings.Replace(good, ".", "_", 1), "192.0.2.3:1", string(ReasonMalformed)},
		{"std alphabet", "alice", strings.Repeat("+", 43) + "." + strings.Repeat("/", 43), "192.0.2.3:1", string(ReasonMalformed)},
		{"forged", "alice", forged, "192.0.2.4:1", string(ReasonBadSignature)},
		{"tampered", "alice", tampered, "192.0.2.4:1", string(ReasonBadSignature)},
		{"unknown", "alice", unknown, "192.0.2.5:1", string(ReasonUnknownToken)},
		{"wrong owner", "bob", good, "192.0.2.6:1", string(ReasonWrongOwner)},
		{"deleted user", "carol", carols, "192.0.2.7:1", string(ReasonUnknownUser)},
		{"revoked", "alice", revoked, "192.0.2.8:1", string(ReasonRevoked)},
		{"expired", "alice", expiring, "192.0.2.9:1", string(ReasonExpired)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Check(ctx, tt.login, tt.secret, tt.remote)
			if got := reasonOf(err); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrRefused) {
				t.Errorf("errors.Is(%v, ErrRefused) = false", err)
			}
			if want := "auth: login refused: " + tt.want; err.Error() != want {
				t.Errorf("got message %q, want %q", err.Error(), want)
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("message contains the secret")
			}
		})
	}

	// rate-limited: three failures from one address lock out that pair,
	// even for the right token.
	for range 3 {
		s.Check(ctx, "alice", forged, "198.51.100.1:1")
	}
	if got := reasonOf(s.Check(ctx, "alice", good, "198.51.100.1:2")); got != string(ReasonRateLimited) {
		t.Errorf("after 3 failures: got %q, want %q", got, ReasonRateLimited)
	}
	// The same user from elsewhere is not affected.
	if err := s.Check(ctx, "alice", good, "198.51.100.2:1"); err != nil {
		t.Errorf("from another address: got %v, want nil", err)
	}
}

// flip returns a different base64url character.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

// TestRefusedErrorWhy checks the interface the SSH layer uses.
func TestRefusedErrorWhy(t *testing.T) {
	var err error = &RefusedError{Reason: ReasonExpired}
	w, ok := err.(interface{ Why() string })
	if !ok {
		t.Fatal("*RefusedError has no Why() string")
	}
	if got, want := w.Why(), "expired"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestExpiryAndRefresh(t *testing.T) { eachStore(t, testExpiryAndRefresh) }

func testExpiryAndRefresh(t *testing.T, open opener) {
	ctx := context.Background()
	clk := newFakeClock()
	s, _ := open(t, WithClock(clk.Now), WithLimiter(LimiterConfig{Disabled: true}))
	mustUser(t, s, "alice")
	const day = 24 * time.Hour

	t.Run("hard expiry", func(t *testing.T) {
		secret, tok := mustMint(t, s, "alice", MintOptions{Expires: 2 * day})
		clk.Advance(2*day - time.Second)
		if err := s.Check(ctx, "alice", secret, "::1"); err != nil {
			t.Fatalf("1s before expiry: got %v, want nil", err)
		}
		clk.Advance(time.Second)
		if got := reasonOf(s.Check(ctx, "alice", secret, "::1")); got != string(ReasonExpired) {
			t.Fatalf("at expiry: got %q, want expired", got)
		}
		if got := tok.State(clk.Now()); got != StateExpired {
			t.Errorf("got state %q, want %q", got, StateExpired)
		}
	})

	t.Run("sliding", func(t *testing.T) {
		created := clk.Now()
		secret, tok := mustMint(t, s, "alice", MintOptions{Expires: 10 * day, Refresh: 3 * day})
		if want := created.Add(3 * day); !tok.Expires.Equal(want) {
			t.Fatalf("got Expires %v, want created+3d %v", tok.Expires, want)
		}
		if want := created.Add(10 * day); !tok.HardExpires.Equal(want) {
			t.Fatalf("got HardExpires %v, want created+10d %v", tok.HardExpires, want)
		}
		// Used every 2 days it lives on, each use moving expiry to now+3d…
		for i := range 4 {
			clk.Advance(2 * day)
			if err := s.Check(ctx, "alice", secret, "::1"); err != nil {
				t.Fatalf("use %d at day %d: got %v, want nil", i, 2*(i+1), err)
			}
			got := tokenByID(t, s, tok.ID)
			if want := minTime(clk.Now().Add(3*day), created.Add(10*day)); !got.Expires.Equal(want) {
				t.Fatalf("after use at day %d: got Expires %v, want %v", 2*(i+1), got.Expires, want)
			}
		}
		// …but never past the hard limit: day 8 use gave expiry day 10.
		clk.Advance(2*day - time.Nanosecond)
		if err := s.Check(ctx, "alice", secret, "::1"); err != nil {
			t.Fatalf("just before the hard limit: got %v, want nil", err)
		}
		clk.Advance(time.Nanosecond)
		if got := reasonOf(s.Check(ctx, "alice", secret, "::1")); got != string(ReasonExpired) {
			t.Fatalf("at the hard limit: got %q, want expired", got)
		}
	})

	t.Run("idle past the window", func(t *testing.T) {
		secret, _ := mustMint(t, s, "alice", MintOptions{Expires: 10 * day, Refresh: day})
		clk.Advance(day + time.Second)
		if got := reasonOf(s.Check(ctx, "alice", secret, "::1")); got != string(ReasonExpired) {
			t.Fatalf("unused for longer than the window: got %q, want expired", got)
		}
	})

	t.Run("window longer than expiry", func(t *testing.T) {
		created := clk.Now()
		_, tok := mustMint(t, s, "alice", MintOptions{Expires: day, Refresh: 5 * day})
		if want := created.Add(day); !tok.Expires.Equal(want) {
			t.Fatalf("got Expires %v, want min(created+A, created+E) = %v", tok.Expires, want)
		}
	})
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func tokenByID(t *testing.T, s *Store, id string) Token {
	t.Helper()
	ts, err := s.Tokens(context.Background(), "")
	if err != nil {
		t.Fatalf("Tokens: %v", err)
	}
	for _, tok := range ts {
		if tok.ID == id {
			return tok
		}
	}
	t.Fatalf("token %s not listed", id)
	return Token{}
}

func TestRevokeAndDeleteUserRefusedNextCheck(t *testing.T) {
	eachStore(t, testRevokeAndDeleteUserRefusedNextCheck)
}

func testRevokeAndDeleteUserRefusedNextCheck(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t, WithLimiter(LimiterConfig{Disabled: true}))
	mustUser(t, s, "alice")
	a1, tok1 := mustMint(t, s, "alice", MintOptions{Expires: time.Hour})
	a2, tok2 := mustMint(t, s, "alice", MintOptions{Expires: time.Hour})
	for _, sec := range []string{a1, a2} {
		if err := s.Check(ctx, "alice", sec, "127.0.0.1:1"); err != nil {
			t.Fatalf("Check before: %v", err)
		}
	}
	if err := s.RevokeToken(ctx, tok1.ID); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if got := reasonOf(s.Check(ctx, "alice", a1, "127.0.0.1:1")); got != string(ReasonRevoked) {
		t.Errorf("revoked token: got %q, want revoked", got)
	}
	if err := s.Check(ctx, "alice", a2, "127.0.0.1:1"); err != nil {
		t.Errorf("other token after revoke: got %v, want nil", err)
	}
	if err := s.RevokeToken(ctx, tok1.ID); err != nil {
		t.Errorf("revoking twice: got %v, want nil", err)
	}
	if err := s.RevokeToken(ctx, "000000000000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking unknown id: got %v, want ErrNotFound", err)
	}

	if err := s.DeleteUser(ctx, "alice"); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if got := reasonOf(s.Check(ctx, "alice", a2, "127.0.0.1:1")); got != string(ReasonUnknownUser) {
		t.Errorf("token of deleted user: got %q, want unknown-user", got)
	}
	// Re-creating the login does not bring the old tokens back.
	mustUser(t, s, "alice")
	if got := reasonOf(s.Check(ctx, "alice", a2, "127.0.0.1:1")); got != string(ReasonRevoked) {
		t.Errorf("old token of re-created user: got %q, want revoked", got)
	}
	if got := tokenByID(t, s, tok2.ID); !got.Revoked || got.State(time.Now()) != StateRevoked {
		t.Errorf("got %+v, want revoked", got)
	}
}

// TestRevokeFromOtherStoreDuringVerifyLoop opens a second Store on the same
// file, as the CLI would, and revokes while the first store checks in a
// loop in another goroutine: the first check after RevokeToken returns is
// refused.
func TestRevokeFromOtherStoreDuringVerifyLoop(t *testing.T) {
	eachStore(t, testRevokeFromOtherStoreDuringVerifyLoop)
}

func testRevokeFromOtherStoreDuringVerifyLoop(t *testing.T, open opener) {
	ctx := context.Background()
	daemon, path := open(t, WithLimiter(LimiterConfig{Disabled: true}))
	mustUser(t, daemon, "alice")
	secret, tok := mustMint(t, daemon, "alice", MintOptions{Expires: time.Hour, Refresh: time.Minute})

	cli, err := reopen(path)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	t.Cleanup(func() { cli.Close() })

	type result struct {
		start time.Time
		err   error
	}
	results := make(chan result, 1024)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(results)
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			err := daemon.Check(ctx, "alice", secret, "127.0.0.1:1")
			select {
			case results <- result{start, err}:
			case <-stop:
				return
			}
		}
	}()
	// Let the loop run (and write last_used) for a while.
	okBefore := 0
	for okBefore < 20 {
		r := <-results
		if r.err != nil {
			t.Fatalf("before revoke: got %v, want nil", r.err)
		}
		okBefore++
	}
	if err := cli.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatalf("RevokeToken from second store: %v", err)
	}
	revokedAt := time.Now()
	var after []error
	for r := range results {
		if r.start.After(revokedAt) {
			after = append(after, r.err)
			if len(after) == 5 {
				break
			}
		}
	}
	close(stop)
	<-done
	for i, err := range after {
		if got := reasonOf(err); got != string(ReasonRevoked) {
			t.Errorf("check %d after the revoke: got %q, want revoked", i, got)
		}
	}
	if len(after) != 5 {
		t.Errorf("got %d checks after the revoke, want 5", len(after))
	}

	// Same for a user deleted by the other process.
	mustUser(t, cli, "bob")
	bobs, _ := mustMint(t, cli, "bob", MintOptions{Expires: time.Hour})
	if err := daemon.Check(ctx, "bob", bobs, "127.0.0.1:1"); err != nil {
		t.Fatalf("bob before delete: %v", err)
	}
	if err := cli.DeleteUser(ctx, "bob"); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if got := reasonOf(daemon.Check(ctx, "bob", bobs, "127.0.0.1:1")); got != string(ReasonUnknownUser) {
		t.Errorf("bob after delete by the other store: got %q, want unknown-user", got)
	}
}

// TestHMACBeforeStore shows that garbage is refused without the store: with
// the database closed, a badly signed token still gets bad-signature (and a
// malformed one malformed), while a well-signed one reaches the store and
// gets a storage error.
func TestHMACBeforeStore(t *testing.T) { eachStore(t, testHMACBeforeStore) }

func testHMACBeforeStore(t *testing.T, open opener) {
	ctx := context.Background()
	s, _ := open(t)
	mustUser(t, s, "alice")
	good, _ := mustMint(t, s, "alice", MintOptions{Expires: time.Hour})
	forged := signToken(bytes.Repeat([]byte{1}, hmacKeyLen), make([]byte, tokenRandLen))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := reasonOf(s.Check(ctx, "alice", forged, "127.0.0.1:1")); got != string(ReasonBadSignature) {
		t.Errorf("forged token on a closed store: got %q, want bad-signature", got)
	}
	if got := reasonOf(s.Check(ctx, "alice", "garbage", "127.0.0.1:1")); got != string(ReasonMalformed) {
		t.Errorf("garbage on a closed store: got %q, want malformed", got)
	}
	err := s.Check(ctx, "alice", good, "127.0.0.1:1")
	var re *RefusedError
	if err == nil || errors.As(err, &re) {
		t.Errorf("good token on a closed store: got %v, want a storage error", err)
	}
	if err != nil && strings.Contains(err.Error(), good) {
		t.Errorf("storage error contains the secret")
	}
}

// TestOnlyHashStored scans the database files for the token and its parts.
func TestOnlyHashStored(t *testing.T) {
	ctx := context.Background()
	s, path := openTestStore(t)
	mustUser(t, s, "alice")
	secret, tok := mustMint(t, s, "alice", MintOptions{Expires: time.Hour, Label: "scan"})
	if err := s.Check(ctx, "alice", secret, "127.0.0.1:1"); err != nil {
		t.Fatalf("Check: %v", err)
	}
	randPart, sigPart, _ := strings.Cut(secret, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(randPart)
	sig, _ := base64.RawURLEncoding.DecodeString(sigPart)
	needles := map[string][]byte{
		"token":           []byte(secret),
		"random part b64": []byte(randPart),
		"signature b64":   []byte(sigPart),
		"random bytes":    raw,
		"signature bytes": sig,
	}
	// The hash must be there, or the scan proves nothing.
	hash := tokenHash(secret)
	sawHash := false
	files, _ := filepath.Glob(path + "*")
	if len(files) == 0 {
		t.Fatalf("no database files at %s", path)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		for name, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s: contains the %s", filepath.Base(f), name)
			}
		}
		if bytes.Contains(b, hash) {
			sawHash = true
		}
	}
	if !sawHash {
		t.Errorf("sha256 of the token not found in %v: scan is not looking at the data", files)
	}
	// And through SQL: the one stored value is the hash.
	var got []byte
	if err := s.db.QueryRowContext(ctx, `SELECT hash FROM tokens WHERE id = ?`, tok.ID).Scan(&got); err != nil {
		t.Fatalf("select hash: %v", err)
	}
	if !bytes.Equal(got, hash) {
		t.Errorf("got stored %x, want sha256 %x", got, hash)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("got database mode %v, want 0600 (it holds the signing key)", perm)
	}
}
