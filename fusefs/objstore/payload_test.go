package objstore

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sftpgate/sftpgate/internal/testenv"
)

// flipProxy is a loopback TCP proxy to a MinIO server that, when armed,
// flips one byte of the first request body that goes through it: the
// byte at bodyOffset after the end of the request's headers.
type flipProxy struct {
	ln     net.Listener
	target string
	// mu guards the fields below.
	mu      sync.Mutex
	armed   bool
	flipped int // bodies changed so far
	drop    int // connections still to close at once
	dropped int // connections closed at once so far
	wg      sync.WaitGroup
}

// bodyOffset is where the proxy flips a byte: inside the first aws-chunked
// chunk (its size line is a few bytes), well before the end of any body
// the test sends.
const bodyOffset = 1000

func startFlipProxy(t *testing.T, target string) *flipProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &flipProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *flipProxy) arm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = true
}

func (p *flipProxy) flips() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.flipped
}

func (p *flipProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *flipProxy) dropNext(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop = n
}

func (p *flipProxy) drops() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

func (p *flipProxy) handle(c net.Conn) {
	defer c.Close()
	p.mu.Lock()
	drop := p.drop > 0
	if drop {
		p.drop--
		p.dropped++
	}
	p.mu.Unlock()
	if drop {
		// Closed once part of the body came: the sender has read (and
		// summed) some of it.
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.ReadAtLeast(c, make([]byte, 16<<10), 16<<10)
		return
	}
	s, err := net.DialTimeout("tcp", p.target, 10*time.Second)
	if err != nil {
		return
	}
	defer s.Close()
	deadline := time.Now().Add(time.Minute)
	c.SetDeadline(deadline)
	s.SetDeadline(deadline)
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(c, s)
		c.Close()
	}()
	p.forward(s, c)
	s.(*net.TCPConn).CloseWrite()
	<-done
}

// forward copies client bytes to the server, flipping the byte at
// bodyOffset after the first "\r\n\r\n" of the connection when armed (once
// per proxy).
func (p *flipProxy) forward(dst io.Writer, src io.Reader) {
	var seen []byte // the connection's bytes until the flip is decided
	decided := false
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			b := buf[:n]
			if !decided {
				start := len(seen)
				seen = append(seen, b...)
				if i := bytes.Index(seen, []byte("\r\n\r\n")); i >= 0 {
					at := i + 4 + bodyOffset
					if at < len(seen) {
						decided = true
						p.mu.Lock()
						if p.armed {
							p.armed = false
							p.flipped++
							if at >= start {
								b[at-start] ^= 0x01
							}
						}
						p.mu.Unlock()
						seen = nil
					}
				}
			}
			if _, werr := dst.Write(b); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestPayloadCorruptionCaught: uploads sent unsigned with a CRC32C trailer
// (putPart, putSingle) are refused by a real MinIO when one byte of the
// body changes on the way (a proxy flips it), and stored whole when
// nothing changes, also after connections dropped unanswered (retries).
func TestPayloadCorruptionCaught(t *testing.T) {
	srv := testenv.StartMinIOT(t)
	bucket := srv.NewBucket(t, "payload")
	proxy := startFlipProxy(t, srv.Endpoint)
	c, err := minio.New(proxy.ln.Addr().String(), &minio.Options{
		Creds:      credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
		MaxRetries: 1,
		// One connection per request: the proxy looks at the first one
		// of each connection.
		Transport: &http.Transport{DisableKeepAlives: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	core := minio.Core{Client: c}
	data := make([]byte, 6<<20) // over the 5 MiB a part other than the last needs
	rng := rand.NewChaCha8([32]byte{14})
	rng.Read(data)
	r := bytes.NewReader(data)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	check := func(t *testing.T, key string, want []byte) {
		t.Helper()
		obj, err := srv.Client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer obj.Close()
		got, err := io.ReadAll(obj)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("object %s: got %d bytes (equal: false), want the %d bytes sent", key, len(got), len(want))
		}
	}
	refused := func(t *testing.T, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("upload with a flipped byte: got success, want a checksum error")
		}
		if proxy.flips() == 0 {
			t.Fatalf("the proxy flipped nothing")
		}
		code := minio.ToErrorResponse(err).Code
		if !strings.Contains(code, "Checksum") && code != "BadDigest" && code != "InvalidDigest" {
			t.Fatalf("upload with a flipped byte: got %v (code %q), want a checksum mismatch", err, code)
		}
		t.Logf("refused: %s", code)
	}

	t.Run("single", func(t *testing.T) {
		const key = "single.bin"
		info, err := putSingle(ctx, c, bucket, key, r, 64<<10, nil)
		if err != nil {
			t.Fatalf("putSingle: %v", err)
		}
		if info.ChecksumCRC32C == "" {
			t.Errorf("putSingle: the server reports no CRC32C")
		}
		check(t, key, data[:64<<10])
		proxy.arm()
		before := proxy.flips()
		_, err = putSingle(ctx, c, bucket, "single-bad.bin", r, 64<<10, nil)
		if proxy.flips() == before {
			t.Fatalf("the proxy flipped nothing")
		}
		refused(t, err)
		if _, err := srv.Client.StatObject(ctx, bucket, "single-bad.bin", minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != "NoSuchKey" {
			t.Fatalf("object after a refused PUT: got %v, want NoSuchKey", err)
		}
	})

	t.Run("single retried", func(t *testing.T) {
		// The first two connections are closed unanswered in the middle of
		// the body: putSingle sends the file again (minio-go, handed a body
		// it cannot seek, does not), each time with the sum of what it
		// sends.
		const key = "single-retried.bin"
		proxy.dropNext(2)
		before := proxy.drops()
		start := time.Now()
		if _, err := putSingle(ctx, c, bucket, key, r, 100<<10, nil); err != nil {
			t.Fatalf("putSingle after 2 dropped connections: %v", err)
		}
		// Its back-off adds up to 0.5 s; left to minio-go's retries (a
		// body it can seek) the same upload took 20 s here.
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("putSingle after 2 dropped connections: took %v, want well under 10s", took)
		}
		if n := proxy.drops() - before; n != 2 {
			t.Fatalf("connections dropped: got %d, want 2", n)
		}
		check(t, key, data[:100<<10])
	})

	t.Run("part", func(t *testing.T) {
		const key = "multi.bin"
		id, err := core.NewMultipartUpload(ctx, bucket, key, minio.PutObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer core.AbortMultipartUpload(context.WithoutCancel(ctx), bucket, key, id)
		p1, err := putPart(ctx, core, bucket, key, id, 1, r, 0, 5<<20)
		if err != nil {
			t.Fatalf("putPart 1: %v", err)
		}
		proxy.arm()
		_, err = putPart(ctx, core, bucket, key, id, 2, r, 5<<20, 1<<20)
		refused(t, err)
		p2, err := putPart(ctx, core, bucket, key, id, 2, r, 5<<20, 1<<20)
		if err != nil {
			t.Fatalf("putPart 2 again: %v", err)
		}
		parts := []minio.CompletePart{{PartNumber: 1, ETag: p1.ETag}, {PartNumber: 2, ETag: p2.ETag}}
		if _, err := core.CompleteMultipartUpload(ctx, bucket, key, id, parts, minio.PutObjectOptions{}); err != nil {
			t.Fatalf("complete: %v", err)
		}
		check(t, key, data)
	})
}
