package testenv

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"
)

func TestStartMinIO(t *testing.T) {
	m := StartMinIOT(t)
	b := m.NewBucket(t, "testenv")
	ctx := context.Background()
	data := []byte("hello")
	if _, err := m.Client.PutObject(ctx, b, "k", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	o, err := m.Client.GetObject(ctx, b, "k", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("got %q, want %q", got, data)
	}
}
