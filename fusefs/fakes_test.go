package fusefs_test

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/sftpgate/sftpgate/fusefs"
)

// fakeGrants is a Grants whose answers a test can change while mounted.
type fakeGrants struct {
	// mu guards ws.
	mu sync.Mutex
	ws map[string][]fusefs.Workspace
}

var _ fusefs.Grants = (*fakeGrants)(nil)

func newFakeGrants() *fakeGrants {
	return &fakeGrants{ws: map[string][]fusefs.Workspace{}}
}

func (g *fakeGrants) Workspaces(ctx context.Context, user string) ([]fusefs.Workspace, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.ws[user]), nil
}

// set replaces the workspaces of user.
func (g *fakeGrants) set(user string, ws ...fusefs.Workspace) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ws[user] = ws
}

// countingTransport counts the object GET requests that go through it.
// Bucket-level GETs (listings, location) and HEADs are not counted.
type countingTransport struct {
	next http.RoundTripper

	// mu guards gets and lookups.
	mu   sync.Mutex
	gets map[string]int // "/bucket/key" → object GETs
	// lookups counts the HEADs of objects and the listings with a prefix,
	// as "/bucket/key" and "/bucket?prefix".
	lookups map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case r.Method == http.MethodGet && isObjectGet(r):
		c.mu.Lock()
		c.gets[r.URL.Path]++
		c.mu.Unlock()
	case r.Method == http.MethodHead:
		c.mu.Lock()
		c.lookups[r.URL.Path]++
		c.mu.Unlock()
	case r.Method == http.MethodGet && r.URL.Query().Has("list-type"):
		c.mu.Lock()
		c.lookups[strings.TrimSuffix(r.URL.Path, "/")+"?"+r.URL.Query().Get("prefix")]++
		c.mu.Unlock()
	}
	return c.next.RoundTrip(r)
}

// listingsOf returns how many listings of prefix went through c.
func (c *countingTransport) listingsOf(bucket, prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lookups["/"+bucket+"?"+prefix]
}

// lookupsOf returns how many HEADs of bucket/key and listings of the
// prefix key+"/" went through c.
func (c *countingTransport) lookupsOf(bucket, key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lookups["/"+bucket+"/"+key] + c.lookups["/"+bucket+"?"+key+"/"]
}

// isObjectGet reports whether r reads an object (path /bucket/key, no
// bucket-level query such as list-type or location).
func isObjectGet(r *http.Request) bool {
	q := r.URL.Query()
	for _, k := range []string{"list-type", "location", "prefix", "delimiter", "uploads", "versioning", "policy"} {
		if q.Has(k) {
			return false
		}
	}
	p := strings.TrimPrefix(r.URL.Path, "/")
	i := strings.IndexByte(p, '/')
	return i > 0 && i < len(p)-1
}

// objectGets returns how many object GETs of bucket/key went through c.
func (c *countingTransport) objectGets(bucket, key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gets["/"+bucket+"/"+key]
}

// lockedBuffer collects a test's log lines; they are printed if it fails.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
