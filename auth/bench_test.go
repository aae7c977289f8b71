package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkCheck10kTokens measures Check (a successful login: the
// limiter, a read and a write) with 10,000 tokens in the store, on SQLite
// and on PostgreSQL (loopback), and reports the median and
// 99th-percentile latency. Each iteration is checksPerIter logins, so
// that `-benchtime 1x` (make bench) still gives percentiles.
func BenchmarkCheck10kTokens(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchCheck10kTokens(b, openTestStore) })
	b.Run("postgres", func(b *testing.B) { benchCheck10kTokens(b, openPostgresTestStore) })
}

// checksPerIter is the number of logins of one benchmark iteration.
const checksPerIter = 1000

func benchCheck10kTokens(b *testing.B, open opener) {
	ctx := context.Background()
	s, _ := open(b)
	const users, tokens = 100, 10_000
	for i := range users {
		mustUser(b, s, fmt.Sprintf("user%03d", i))
	}
	// Fill in one transaction: minting 10k tokens one by one is slow and is
	// not what is measured. The rows are real tokens of this store.
	secrets := make([]string, 0, tokens)
	owners := make([]string, 0, tokens)
	now := time.Now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range tokens {
		random := make([]byte, tokenRandLen)
		for j := range random {
			random[j] = byte(i >> (8 * (j % 4)))
		}
		random[31] = 0xee
		secret := signToken(s.key, random)
		h := sha256.Sum256([]byte(secret))
		owner := fmt.Sprintf("user%03d", i%users)
		if _, err := tx.ExecContext(ctx, `INSERT INTO tokens(id, hash, owner, label, created, expires, hard_expires, refresh)
			VALUES (?, ?, ?, '', ?, ?, ?, ?)`,
			fmt.Sprintf("%012x", i), h[:], owner, nanos(now), nanos(now.Add(time.Hour)), nanos(now.Add(24*time.Hour)), int64(time.Hour)); err != nil {
			b.Fatal(err)
		}
		secrets = append(secrets, secret)
		owners = append(owners, owner)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	durs := make([]time.Duration, 0, b.N*checksPerIter)
	b.ResetTimer()
	for i := range b.N * checksPerIter {
		k := (i * 7919) % tokens
		// One address per login, as from many clients: the limiter's
		// work is part of a login.
		remote := fmt.Sprintf("10.%d.%d.%d:1", i>>16&0xff, i>>8&0xff, i&0xff)
		start := time.Now()
		if err := s.Check(ctx, owners[k], secrets[k], remote); err != nil {
			b.Fatalf("Check: %v", err)
		}
		durs = append(durs, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(durs)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(durs[len(durs)/2]), "p50-ms")
	b.ReportMetric(ms(durs[min(len(durs)-1, len(durs)*99/100)]), "p99-ms")
}
