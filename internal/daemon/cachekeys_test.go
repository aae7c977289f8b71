package daemon

import (
	"testing"

	"github.com/sftpgate/sftpgate/auth"
)

func TestWorkspaceKeys(t *testing.T) {
	valid := workspaceKeys([]auth.Workspace{
		{Slug: "personal-files", Bucket: "personal", Prefix: "{user}/"},
		{Slug: "common-files", Bucket: "common"},
		{Slug: "projects", Bucket: "work", Prefix: "teams/{user}-home/docs"},
	})
	tests := []struct {
		bucket, key string
		want        bool
	}{
		{"personal", "bob/planted.txt", true},
		{"personal", "alice/a/b/c.bin", true},
		{"personal", "bob/", false},         // the prefix itself is no file
		{"personal", "planted.txt", false},  // not under any user's folder
		{"personal", "/planted.txt", false}, // {user} is never empty
		{"common", "anything/at/all", true}, // the whole bucket
		{"common", "", false},               // no key
		{"other", "bob/planted.txt", false}, // another bucket
		{"work", "teams/bob-home/docs/x", true},
		{"work", "teams/a/b-home/docs/x", false}, // {user} is one segment
		{"work", "teams/bob-home/x", false},
		{"work", "teams/bob-home/docs/\n", true},
	}
	for _, tt := range tests {
		if got := valid(tt.bucket, tt.key); got != tt.want {
			t.Errorf("valid(%q, %q): got %v, want %v", tt.bucket, tt.key, got, tt.want)
		}
	}
}
