package sftpd

import (
	"bytes"
	"io"
	"testing"
)

// BenchmarkTransfer measures upload and download throughput of one file
// over loopback (go test -bench Transfer -run X ./sftpd/).
func BenchmarkTransfer(b *testing.B) {
	const size = 32 << 20
	ts := startServer(b, nil)
	cl := ts.sftp(b)
	data := make([]byte, size)
	b.Run("upload", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			f, err := cl.Create("/bench.bin")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("download", func(b *testing.B) {
		b.SetBytes(size)
		for range b.N {
			f, err := cl.Open("/bench.bin")
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.WriteTo(io.Discard); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}
