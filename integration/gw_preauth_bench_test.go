package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// Sizes of BenchmarkPreauthFlood.
const (
	benchFloodConns   = 10000 // idle pre-auth connections per scenario
	benchFloodLogins  = 5     // logins timed during each flood
	benchFloodSources = 100   // addresses of the distributed flood
)

// BenchmarkPreauthFlood measures the daemon (default limits, 1024 file
// descriptors) under 10,000 connections that never send a byte: its RSS
// and descriptors, and the time a real user from another address takes to
// log in and list /, with the flood from one address, then spread over
// 100 addresses (which fills maxStartups: new connections from anyone are
// dropped until the held ones reach loginGraceTime, as with OpenSSH).
func BenchmarkPreauthFlood(b *testing.B) {
	g := startGateway(b, gwOptions{nofile: 1024})
	tok := g.addUser("alice", personalWS)
	if _, _, err := timedLogin(g, tok); err != nil {
		b.Fatalf("login before the flood: %v", err)
	}
	pid := g.pid()
	var rows []benchRow
	add := func(metric, value, target, ok string) { rows = append(rows, benchRow{metric, value, target, ok}) }
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rows = rows[:0]
		rss0, fd0 := procStatusKiB(b, pid, "VmRSS"), daemonFDs(b, pid)
		add("daemon RSS, idle", fmt.Sprintf("%.1f MiB", float64(rss0)/1024), "", "")
		add("daemon fds, idle", fmt.Sprint(fd0), "", "")

		// One address.
		f := startFlood(b, g.addr, "127.0.0.2", benchFloodConns, 64)
		rss, fds := procStatusKiB(b, pid, "VmRSS"), daemonFDs(b, pid)
		lat, okN := floodLogins(g, tok)
		f.close()
		add("one address: dial time of 10,000", f.dialed.Round(time.Millisecond).String(), "", "")
		add("one address: daemon RSS", fmt.Sprintf("%.1f MiB (+%.1f)", float64(rss)/1024, float64(rss-rss0)/1024), "< +30 MiB", okIf(rss-rss0 < 30*1024))
		add("one address: daemon fds", fmt.Sprintf("%d (+%d)", fds, fds-fd0), "≤ +32 (maxStartupsPerSource) + 8", okIf(fds-fd0 <= 40))
		add("one address: logins from 127.0.0.1", fmt.Sprintf("%d/%d", okN, benchFloodLogins), fmt.Sprintf("%d/%d", benchFloodLogins, benchFloodLogins), okIf(okN == benchFloodLogins))
		add("one address: login+list latency (median, max)", latencies(lat), "median < 1s", okIf(len(lat) > 0 && lat[len(lat)/2] < time.Second))
		waitFor(time.Minute, 100*time.Millisecond, func() bool { return daemonFDs(b, pid) <= fd0+2 })

		// 100 addresses.
		per := benchFloodConns / benchFloodSources
		var floods []*flood
		start := time.Now()
		for s := range benchFloodSources {
			floods = append(floods, startFlood(b, g.addr, fmt.Sprintf("127.0.1.%d", 1+s), per, 4))
		}
		dialed := time.Since(start)
		rss, fds = procStatusKiB(b, pid, "VmRSS"), daemonFDs(b, pid)
		lat, okN = floodLogins(g, tok)
		for _, fl := range floods {
			fl.close()
		}
		add("100 addresses: dial time of 10,000", dialed.Round(time.Millisecond).String(), "", "")
		add("100 addresses: daemon RSS", fmt.Sprintf("%.1f MiB (+%.1f)", float64(rss)/1024, float64(rss-rss0)/1024), "< +60 MiB", okIf(rss-rss0 < 60*1024))
		add("100 addresses: daemon fds", fmt.Sprintf("%d (+%d)", fds, fds-fd0), "≤ +512 (maxStartups full) + 8", okIf(fds-fd0 <= 520))
		add("100 addresses: logins from 127.0.0.1", fmt.Sprintf("%d/%d", okN, benchFloodLogins), "(maxStartups full: dropped)", "")
		add("100 addresses: login+list latency (median, max)", latencies(lat), "", "")
		waitFor(time.Minute, 100*time.Millisecond, func() bool { return daemonFDs(b, pid) <= fd0+2 })
		rss, fds = procStatusKiB(b, pid, "VmRSS"), daemonFDs(b, pid)
		add("after: daemon RSS, fds", fmt.Sprintf("%.1f MiB, %d", float64(rss)/1024, fds), "", "")
		lat, okN = floodLogins(g, tok)
		add("after: logins, latency", fmt.Sprintf("%d/%d, %s", okN, benchFloodLogins, latencies(lat)), fmt.Sprintf("%d/%d", benchFloodLogins, benchFloodLogins), okIf(okN == benchFloodLogins))
	}
	b.StopTimer()

	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tvalue\ttarget\tok")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.metric, r.value, r.target, r.ok)
	}
	tw.Flush()
	fmt.Print("\nBenchmarkPreauthFlood (10,000 idle pre-auth connections, daemon limited to 1024 fds, default limits)\n" + sb.String())
	for _, r := range rows {
		if r.ok == "NO" {
			b.Errorf("%s: got %s, want %s", r.metric, r.value, r.target)
		}
	}
}

// timedLogin logs in from 127.0.0.1 and lists /, returning how long it
// took and how many workspaces it saw.
func timedLogin(g *gateway, tok string) (time.Duration, int, error) {
	start := time.Now()
	c, err := g.login("alice", tok)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	sc, err := newSFTPClient(c)
	if err != nil {
		return 0, 0, err
	}
	defer sc.Close()
	ents, err := sc.ReadDir("/")
	if err != nil {
		return 0, 0, err
	}
	return time.Since(start), len(ents), nil
}

// floodLogins times benchFloodLogins logins, sorted; it returns the
// latencies of those that succeeded and their number.
func floodLogins(g *gateway, tok string) ([]time.Duration, int) {
	var lat []time.Duration
	for range benchFloodLogins {
		if d, _, err := timedLogin(g, tok); err == nil {
			lat = append(lat, d)
		}
	}
	slices.Sort(lat)
	return lat, len(lat)
}

// latencies prints the median and max of sorted durations.
func latencies(d []time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	return fmt.Sprintf("%v, %v", d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
}
