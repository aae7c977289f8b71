package daemon

import (
	"regexp"
	"strings"

	"github.com/sftpgate/sftpgate/auth"
)

// workspaceKeys returns the fusefs.Options.ValidKey of the workspaces ws:
// a key is valid in a bucket when it lies below the prefix of one of the
// bucket's workspaces, a {user} in that prefix matching one path segment
// (any user's). A journal found in the cache at start that names any
// other key is not trusted.
func workspaceKeys(ws []auth.Workspace) func(bucket, key string) bool {
	byBucket := map[string][]*regexp.Regexp{}
	for _, w := range ws {
		byBucket[w.Bucket] = append(byBucket[w.Bucket], prefixPattern(w.Prefix))
	}
	return func(bucket, key string) bool {
		for _, re := range byBucket[bucket] {
			if re.MatchString(key) {
				return true
			}
		}
		return false
	}
}

// prefixPattern compiles the unexpanded workspace prefix p into a pattern
// of the keys below it: "{user}/" matches "alice/x", never "x" or "/x" or
// "a/b/x" through the placeholder.
func prefixPattern(p string) *regexp.Regexp {
	if p != "" && !strings.HasSuffix(p, "/") {
		p += "/" // as fusefs normalizes it
	}
	parts := strings.Split(p, auth.UserPlaceholder)
	for i, s := range parts {
		parts[i] = regexp.QuoteMeta(s)
	}
	return regexp.MustCompile(`(?s)\A` + strings.Join(parts, `[^/]+`) + `.`)
}
