package objstore

import (
	"github.com/minio/minio-go/v7"
)

// Part is one part of a multipart upload that was sent: its number and
// the ETag the server gave it.
type Part struct {
	Number int
	ETag   string
}

// Resume returns the multipart upload id of bucket/key begun earlier
// (maybe by another process), with the parts already sent: more parts
// may be sent, then it is completed (with them all) or aborted.
func (s *Store) Resume(bucket, key, id string, parts []Part) *Multipart {
	m := &Multipart{s: s, bucket: bucket, key: key, id: id}
	for _, p := range parts {
		m.parts = append(m.parts, minio.CompletePart{PartNumber: p.Number, ETag: p.ETag})
	}
	return m
}

// PartETag returns the ETag the server gave part n, if it was sent.
func (m *Multipart) PartETag(n int) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.parts) - 1; i >= 0; i-- {
		if m.parts[i].PartNumber == n {
			return m.parts[i].ETag, true
		}
	}
	return "", false
}
