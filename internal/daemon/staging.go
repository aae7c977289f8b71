package daemon

import (
	"github.com/sftpgate/sftpgate/auth"
	"github.com/sftpgate/sftpgate/fusefs"
)

// stagingLease is how long a node's staged uploads stay held once it
// gives no sign of life: as long as its row in the nodes registry.
const stagingLease = nodeGoneAfter

// The shared identity store keeps the staged uploads' records that fusefs
// reads and writes (both name one type, authapi.StagedUpload): with a
// PostgreSQL store, an interrupted upload is resumed through any node.
var _ fusefs.StagingStore = (*auth.Store)(nil)
