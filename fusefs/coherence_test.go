package fusefs_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// TestExternalChanges changes, behind the mount, objects that the mount
// wrote (so it keeps a clean local copy of them) and read: the mount shows
// the store's state within a few seconds, never its stale copy.
func TestExternalChanges(t *testing.T) {
	w := mountWorkspace(t, testOptions(t))
	tests := []struct {
		name   string
		change func(t *testing.T, key string) error
		want   string // "" = the file is gone
	}{
		{name: "overwritten", want: "replaced behind the mount", change: func(t *testing.T, key string) error {
			putObject(t, w.bucket, key, []byte("replaced behind the mount"))
			return nil
		}},
		{name: "deleted", change: func(t *testing.T, key string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return server.Client.RemoveObject(ctx, w.bucket, key, minio.RemoveObjectOptions{})
		}},
	}
	for _, tt := range tests {
		for _, how := range []string{"written", "read"} {
			t.Run(tt.name+" after "+how, func(t *testing.T) {
				name := tt.name + "-" + how + ".txt"
				p := filepath.Join(w.dir, name)
				if how == "written" {
					if err := os.WriteFile(p, []byte("written through the mount"), 0o644); err != nil {
						t.Fatalf("WriteFile: %v", err)
					}
				} else {
					putObject(t, w.bucket, w.key(name), []byte("put directly at first"))
				}
				if _, err := os.ReadFile(p); err != nil {
					t.Fatalf("ReadFile: %v", err)
				}
				if err := tt.change(t, w.key(name)); err != nil {
					t.Fatalf("change behind the mount: %v", err)
				}
				err := eventually(5*time.Second, func() error {
					b, err := os.ReadFile(p)
					switch {
					case tt.want == "" && !os.IsNotExist(err):
						return fmt.Errorf("ReadFile: got %q, %v, want ENOENT", b, err)
					case tt.want == "":
						if slices.Contains(readDirNames(t, w.dir), name) {
							return fmt.Errorf("still listed")
						}
					case err != nil || string(b) != tt.want:
						return fmt.Errorf("ReadFile: got %q, %v, want %q", b, err, tt.want)
					}
					return nil
				})
				if err != nil {
					t.Errorf("after 5s: %v", err)
				}
			})
		}
	}
}
