package integration

import (
	"encoding/json"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// Helpers of the operations tests on the gateway harness: the rows of
// `mounts --json` and `sessions --json`, and the Prometheus scrape (read with testenv.MetricValueT).

// opsMountRow is a row of `mounts --json`.
type opsMountRow struct {
	User            string     `json:"user"`
	Path            string     `json:"path"`
	Mode            string     `json:"mode"`
	Since           time.Time  `json:"since"`
	Sessions        int        `json:"sessions"`
	OpenFiles       int        `json:"open_files"`
	DirtyBytes      int64      `json:"dirty_bytes"`
	UploadsInFlight int        `json:"uploads_in_flight"`
	CleanBytes      int64      `json:"clean_bytes"`
	HeldUntil       *time.Time `json:"held_until"`
}

// mountRow runs `mounts --json` and returns the row of user's view of
// mode ("rw" or "ro"), if any.
func (g *gateway) mountRow(user, mode string) (opsMountRow, bool) {
	g.t.Helper()
	r := g.mustCLI("mounts", "--json")
	var rows []opsMountRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		g.t.Fatalf("mounts --json: got %q, want a JSON array of views: %v", r.stdout, err)
	}
	for _, row := range rows {
		if row.User == user && row.Mode == mode {
			return row, true
		}
	}
	return opsMountRow{}, false
}

// opsSessionRow is a row of `sessions --json`.
type opsSessionRow struct {
	ID        string    `json:"id"`
	User      string    `json:"user"`
	Remote    string    `json:"remote"`
	Since     time.Time `json:"since"`
	BytesUp   int64     `json:"bytes_up"`
	BytesDown int64     `json:"bytes_down"`
	Op        string    `json:"op"`
}

// sessionRows runs `sessions --json` and returns its rows.
func (g *gateway) sessionRows() []opsSessionRow {
	g.t.Helper()
	r := g.mustCLI("sessions", "--json")
	var rows []opsSessionRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		g.t.Fatalf("sessions --json: got %q, want a JSON array of sessions: %v", r.stdout, err)
	}
	return rows
}

// scrape fetches /metrics from the daemon's metrics listener (started
// with gwOptions{metrics: true}) and parses it with the text parser.
func (g *gateway) scrape() map[string]*dto.MetricFamily {
	g.t.Helper()
	if g.metrics == "" {
		g.t.Fatalf("scrape: got no metricsAddr, want a gateway started with gwOptions{metrics: true}")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + g.metrics + "/metrics")
	if err != nil {
		g.t.Fatalf("scrape %s: got %v, want a response", g.metrics, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		g.t.Fatalf("scrape: got status %s, want 200", resp.Status)
	}
	fams, err := testenv.ParseMetrics(resp.Body)
	if err != nil {
		g.t.Fatalf("scrape: got %v, want the text exposition format", err)
	}
	return fams
}
