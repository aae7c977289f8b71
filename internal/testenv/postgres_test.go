package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestStartPostgres starts a server, writes through it, stops it, starts
// it again and finds the data.
func TestStartPostgres(t *testing.T) {
	p := StartPostgresT(t)
	u := p.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exec := func(q string) error {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, q)
		return err
	}
	if err := exec(`CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)`); err != nil {
		t.Fatalf("create: %v", err)
	}
	p.Stop()
	if err := exec(`SELECT 1`); err == nil {
		t.Fatalf("query after Stop: got nil error, want a refused connection")
	}
	if err := p.Start(); err != nil {
		t.Fatalf("Start again: %v", err)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connect after restart: %v", err)
	}
	defer conn.Close(ctx)
	var x int
	if err := conn.QueryRow(ctx, `SELECT x FROM kept`).Scan(&x); err != nil || x != 42 {
		t.Errorf("got %d, %v; want 42", x, err)
	}
	if _, err := pgx.Connect(ctx, "postgres://postgres:wrong@"+p.Host+":"+itoa(p.Port)+"/postgres?sslmode=disable"); err == nil {
		t.Errorf("wrong password accepted: got nil error")
	}
}

func itoa(n int) string { return fmt.Sprint(n) }
