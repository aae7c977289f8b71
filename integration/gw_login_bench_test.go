package integration

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// loginBenchN is the number of logins measured per identity store.
const loginBenchN = 200

// BenchmarkGatewayLoginStores measures a whole SSH login (TCP connect, key
// exchange, token check; the client closes once authenticated) against a gateway on SQLite and one on PostgreSQL
// (loopback), and reports the median and 99th percentile of each.
func BenchmarkGatewayLoginStores(b *testing.B) {
	for _, st := range []struct{ name, store string }{{"sqlite", storeSQLite}, {"postgres", storePostgres}} {
		b.Run(st.name, func(b *testing.B) {
			g := startGateway(b, gwOptions{database: st.store})
			tok := g.addUser("alice", personalWS)
			if c, err := g.login("alice", tok); err == nil { // warm: first mount, pools
				c.Close()
			}
			durs := make([]time.Duration, 0, b.N*loginBenchN)
			b.ResetTimer()
			for range b.N * loginBenchN {
				start := time.Now()
				c, err := g.login("alice", tok)
				if err != nil {
					b.Fatalf("login: %v", err)
				}
				durs = append(durs, time.Since(start))
				c.Close()
			}
			b.StopTimer()
			slices.Sort(durs)
			p50, p99 := durs[len(durs)/2], durs[min(len(durs)-1, len(durs)*99/100)]
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(p50), "login-p50-ms")
			b.ReportMetric(ms(p99), "login-p99-ms")
			b.Logf("%-8s SSH login (%d): median %s, p99 %s", st.name, len(durs), fmt.Sprint(p50.Round(10*time.Microsecond)), fmt.Sprint(p99.Round(10*time.Microsecond)))
		})
	}
}
