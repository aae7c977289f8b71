// Package control is the protocol of the control socket between the
// administration commands (mounts, mount, unmount, sessions) and the
// running daemon: requests, responses and their rows, as data. The daemon
// (internal/daemon) serves it; the command line sends requests and renders
// the answers.
//
// The daemon listens on <workdir>/sftpgate.sock, a unix socket of mode
// 0600 that only the daemon's own uid may use (checked with SO_PEERCRED on
// every connection). One JSON Request per connection, one JSON Response,
// then the daemon closes it.
package control

import (
	"path/filepath"
	"time"
)

// SocketName is the control socket's name in the working directory.
const SocketName = "sftpgate.sock"

// Path is the control socket of a working directory.
func Path(workdir string) string { return filepath.Join(workdir, SocketName) }

// Limits of the protocol.
const (
	// MaxRequest is the most bytes of one request the daemon reads.
	MaxRequest = 64 << 10
	// MaxResponse is the most bytes of one response a client reads.
	MaxResponse = 16 << 20
	// IOTimeout bounds the reading of a request and the writing of a
	// response.
	IOTimeout = 10 * time.Second
	// OpTimeout bounds one request's work (a mount may take a while).
	OpTimeout = 45 * time.Second
	// ClientWait is how long a client waits for its answer.
	ClientWait = OpTimeout + 2*IOTimeout
	// MaxConns is the number of connections the daemon handles at once;
	// more are refused.
	MaxConns = 16
	// DialTimeout bounds a client's connection to the socket.
	DialTimeout = 5 * time.Second
	// ProbeTimeout bounds the ping with which a starting daemon tells a
	// live one from a dead one's socket.
	ProbeTimeout = 2 * time.Second
)

// Operations (Request.Op).
const (
	OpPing     = "ping"
	OpMounts   = "mounts"
	OpMount    = "mount"
	OpUnmount  = "unmount"
	OpSessions = "sessions"
	OpKill     = "kill"
	OpNodes    = "nodes"
)

// Request is one request on the control socket.
type Request struct {
	Op   string `json:"op"`
	User string `json:"user,omitempty"`
	ID   string `json:"id,omitempty"` // a session, for OpKill
	// Node, for OpKill in a cluster, is the node that holds the session
	// (needed only when two nodes list the same id); empty, the node that
	// lists it.
	Node string `json:"node,omitempty"`
	For  string `json:"for,omitempty"` // a Go duration, for OpMount
	RW   bool   `json:"rw,omitempty"`  // for OpMount
}

// Response is the answer: Error set when the request failed.
type Response struct {
	Error    string       `json:"error,omitempty"`
	Message  string       `json:"message,omitempty"`
	Mounts   []MountRow   `json:"mounts,omitempty"`
	Mount    *MountRow    `json:"mount,omitempty"`
	Sessions []SessionRow `json:"sessions,omitempty"`
	// Mounted is the result of OpMount, Unmounted of OpUnmount.
	Mounted   *Mounted   `json:"mounted,omitempty"`
	Unmounted *Unmounted `json:"unmounted,omitempty"`
	// Reason is set, with Error, when the request was refused for one of
	// the Reason* reasons; Mount is then the view concerned, if any.
	Reason string `json:"reason,omitempty"`
	// Cluster is true when the daemon's identity store is shared
	// (PostgreSQL): Sessions and Mounts then hold the rows of every live
	// node, each with its Node, and Nodes the nodes (OpNodes).
	Cluster bool      `json:"cluster,omitempty"`
	Nodes   []NodeRow `json:"nodes,omitempty"`
	// Warning, when set, says what the answer lacks (the rows of the
	// other nodes, when the shared store could not be read).
	Warning string `json:"warning,omitempty"`
}

// Reasons of a refusal (Response.Reason): the client words them.
const (
	// ReasonHeld refuses OpMount: an admin mount of the other mode holds
	// the view (Response.Mount, with HeldUntil).
	ReasonHeld = "held"
	// ReasonInUse refuses OpUnmount: SFTP sessions of the user use the
	// read-write view (Response.Mount, with Path and Sessions).
	ReasonInUse = "in-use"
	// ReasonNoAdminMount refuses OpUnmount: the user has no admin mount.
	ReasonNoAdminMount = "no-admin-mount"
	// ReasonNoSession refuses OpKill: no session has that ID.
	ReasonNoSession = "no-session"
	// ReasonNodeGone refuses OpKill: the node that holds the session did
	// not run the command in time (it died or lost the store).
	ReasonNodeGone = "node-gone"
	// ReasonAmbiguous refuses OpKill in a cluster: several nodes hold a
	// session with that ID, and the request did not name one (Node).
	ReasonAmbiguous = "ambiguous"
)

// Modes of a view (MountRow.Mode).
const (
	ModeRW = "rw" // the user's own view, shared by their SFTP sessions
	ModeRO = "ro" // a read-only admin view
)

// Mode is ModeRO or ModeRW.
func Mode(readOnly bool) string {
	if readOnly {
		return ModeRO
	}
	return ModeRW
}

// MountRow is one mounted view.
type MountRow struct {
	Node            string     `json:"node,omitempty"` // the node that holds it, in a cluster
	User            string     `json:"user"`
	Path            string     `json:"path"`
	Mode            string     `json:"mode"` // ModeRW or ModeRO
	Since           time.Time  `json:"since"`
	Sessions        int        `json:"sessions"` // SFTP sessions of the user using this view
	OpenFiles       int        `json:"open_files"`
	DirtyBytes      int64      `json:"dirty_bytes"` // written, waiting for upload
	UploadsInFlight int        `json:"uploads_in_flight"`
	CleanBytes      int64      `json:"clean_bytes"`          // cached, uploaded
	HeldUntil       *time.Time `json:"held_until,omitempty"` // end of an admin mount ("sftpgate mount")
}

// Mounted is what an admin mount did.
type Mounted struct {
	// Extended is true when the user's admin mount was there already and
	// its end was pushed back.
	Extended bool `json:"extended,omitempty"`
	// Sessions counts the user's open SFTP sessions sharing a read-write
	// view.
	Sessions int `json:"sessions,omitempty"`
}

// Unmounted is what ending an admin mount did.
type Unmounted struct {
	Dir  string `json:"dir"`
	User string `json:"user"`
	// InUse, when set, says what still uses the view, which is taken
	// down once nothing does; empty when the view is unmounted.
	InUse string `json:"in_use,omitempty"`
}

// SessionRow is one SSH session.
type SessionRow struct {
	Node      string    `json:"node,omitempty"` // the node that holds it, in a cluster
	ID        string    `json:"id"`
	User      string    `json:"user"`
	Remote    string    `json:"remote"`
	Since     time.Time `json:"since"`
	BytesUp   int64     `json:"bytes_up"`   // file data written by the client
	BytesDown int64     `json:"bytes_down"` // file data read by the client
	Op        string    `json:"op"`         // current or last operation
}

// NodeRow is one node of a cluster (a daemon on a shared store).
type NodeRow struct {
	ID        string    `json:"id"`
	Host      string    `json:"host"`
	Addr      string    `json:"addr"` // its SSH listener
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"heartbeat"` // the last one
	Sessions  int       `json:"sessions"`
	Mounts    int       `json:"mounts"`
	Self      bool      `json:"self,omitempty"` // the node that answered
}
