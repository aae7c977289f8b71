package objstore

import (
	"context"
	"encoding/base64"
	"errors"
	"hash"
	"hash/crc32"
	"io"
	"net/http"
	"time"

	"github.com/minio/minio-go/v7"
)

// Payload integrity of uploads. Every byte this package sends to the store
// goes through the functions of this file, the one place where upload
// options are chosen.
//
// minio-go signs a payload sent over plain HTTP with a streaming SHA-256
// (aws-chunked, one signature per 64 KiB chunk): a full SHA-256 pass over
// every byte uploaded, on the daemon's CPU. Sent as
// STREAMING-UNSIGNED-PAYLOAD-TRAILER instead, a body carries a CRC32C of
// its bytes in a trailer (x-amz-checksum-crc32c) that the server checks
// before it stores anything: a part or an object whose bytes changed on
// the way is refused (BadDigest), as a wrong signature was before. CRC32C
// runs in hardware (SSE 4.2), a few percent of a SHA-256 pass. The
// headers are still signed (SigV4); over HTTPS nothing changes but the
// trailer (minio-go sends no payload hash there either).

// crcReader is an upload body that computes the CRC32C of what it reads
// and, at EOF, writes it in the trailer sent after the body. A retry
// seeks back to 0 and starts the sum again.
type crcReader struct {
	r       io.ReadSeeker
	h       hash.Hash32
	trailer http.Header
}

// checksumKey is the trailer that carries the body's CRC32C.
const checksumKey = "X-Amz-Checksum-Crc32c"

// newCRCReader returns the body reading r and the trailer it fills.
func newCRCReader(r io.ReadSeeker) *crcReader {
	c := &crcReader{r: r, h: crc32.New(crc32.MakeTable(crc32.Castagnoli)), trailer: make(http.Header, 1)}
	c.setSum()
	return c
}

func (c *crcReader) setSum() {
	c.trailer.Set(checksumKey, base64.StdEncoding.EncodeToString(c.h.Sum(nil)))
}

// Read reads from the body and adds what it read to the sum.
func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		c.setSum()
	}
	return n, err
}

// Seek moves in the body; back to 0 (a retry) it resets the sum.
func (c *crcReader) Seek(off int64, whence int) (int64, error) {
	n, err := c.r.Seek(off, whence)
	if err == nil && n == 0 {
		c.h.Reset()
		c.setSum()
	}
	return n, err
}

// putPart uploads the bytes [off, off+l) of r as part n of the multipart
// upload id, unsigned with a CRC32C trailer.
func putPart(ctx context.Context, core minio.Core, bucket, key, id string, n int, r io.ReaderAt, off, l int64) (minio.ObjectPart, error) {
	body := newCRCReader(io.NewSectionReader(r, off, l))
	return core.PutObjectPart(ctx, bucket, key, id, n, body, l, minio.PutObjectPartOptions{
		DisableContentSha256: true,
		Trailer:              body.trailer,
	})
}

// putSingleAttempts is how many times putSingle sends a file before it
// gives up on errors worth a retry (network, 5xx, throttling).
const putSingleAttempts = 4

// putSingle uploads the size bytes of r as the object in one PUT,
// unsigned with a CRC32C trailer. It retries by itself: minio-go computes
// that trailer in a wrapper made once per call, not reset when it retries
// a request whose body it had partly read (such a retry took 20 s to get
// through in TestPayloadCorruptionCaught), so the body handed to it cannot
// seek (minio-go then never retries) and every attempt is a new call with
// a new sum.
func putSingle(ctx context.Context, c *minio.Client, bucket, key string, r io.ReaderAt, size int64, meta map[string]string) (minio.UploadInfo, error) {
	opts := minio.PutObjectOptions{
		ContentType:          contentType(key),
		UserMetadata:         meta,
		DisableContentSha256: true,
		Checksum:             minio.ChecksumCRC32C,
	}
	for attempt := 1; ; attempt++ {
		body := struct{ io.Reader }{io.NewSectionReader(r, 0, size)}
		info, err := minio.Core{Client: c}.PutObject(ctx, bucket, key, body, size, "", "", opts)
		if err == nil || attempt >= putSingleAttempts || !retryable(err) || ctx.Err() != nil {
			return info, err
		}
		select {
		case <-time.After(time.Duration(attempt*attempt) * 100 * time.Millisecond):
		case <-ctx.Done():
			return info, err
		}
	}
}

// retryable tells whether a failed request may succeed when sent again:
// no answer, or an answer that says so (timeout, throttling, 5xx).
func retryable(err error) bool {
	var er minio.ErrorResponse
	if !errors.As(err, &er) || er.StatusCode == 0 {
		return true
	}
	return er.StatusCode == http.StatusRequestTimeout || er.StatusCode == http.StatusTooManyRequests || er.StatusCode >= 500
}
