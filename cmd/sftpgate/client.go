package main

// The control client: the commands mounts, mount, unmount and sessions
// ask the running daemon over its control socket (see internal/control).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/sftpgate/sftpgate/internal/control"
)

// ctlCall sends one request to the daemon of the command's working
// directory and returns its response, or an error: no daemon, permission
// denied, or the daemon's own error message.
func ctlCall(cmd *cobra.Command, req control.Request) (control.Response, error) {
	dir, err := workdir(cmd)
	if err != nil {
		return control.Response{}, err
	}
	resp, err := ctlCallPath(cmd.Context(), dir, control.Path(dir), req)
	if err != nil && resp.Reason != "" {
		return resp, refusal(req, resp, err)
	}
	return resp, err
}

// refusal words the daemon's refusal of req (err is its bare message).
func refusal(req control.Request, resp control.Response, err error) error {
	m := resp.Mount
	switch {
	case resp.Reason == control.ReasonNoSession:
		return fmt.Errorf("kill: no session %q (see sftpgate sessions)", req.ID)
	case resp.Reason == control.ReasonNoAdminMount:
		return fmt.Errorf("unmount: %s has no admin mount (see sftpgate mounts)", req.User)
	case resp.Reason == control.ReasonInUse && m != nil:
		return fmt.Errorf("unmount: %s is in use by %d SFTP session(s) of %s: wait for them to end or end them (sftpgate sessions, sftpgate sessions kill ID)", m.Path, m.Sessions, m.User)
	case resp.Reason == control.ReasonHeld && m != nil && m.HeldUntil != nil:
		return fmt.Errorf("mount: %s's view is already mounted %s by an admin until %s: end it first with: sftpgate unmount -u %s",
			m.User, modeWords(m.Mode == control.ModeRO), formatTime(*m.HeldUntil), m.User)
	}
	return err
}

// ctlCallPath is ctlCall for the socket at path (of working directory dir).
func ctlCallPath(ctx context.Context, dir, path string, req control.Request) (control.Response, error) {
	d := net.Dialer{Timeout: control.DialTimeout}
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return control.Response{}, fmt.Errorf("no daemon is running on %s (socket %s)", dir, path)
		case errors.Is(err, os.ErrPermission):
			return control.Response{}, fmt.Errorf("control socket %s: permission denied: run the command as the daemon's user%s", path, socketOwner(path))
		}
		return control.Response{}, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(control.ClientWait))
	// A refused client may find the connection closed before it sends:
	// the daemon's answer (why) is still there to read.
	sendErr := json.NewEncoder(c).Encode(req)
	var resp control.Response
	if err := json.NewDecoder(io.LimitReader(c, control.MaxResponse)).Decode(&resp); err != nil {
		if sendErr != nil {
			return control.Response{}, fmt.Errorf("control socket %s: send: %w", path, sendErr)
		}
		return control.Response{}, fmt.Errorf("control socket %s: no answer from the daemon: %w", path, err)
	}
	if resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

// socketOwner says who owns the socket, when it can be seen: " (uid 998)".
func socketOwner(path string) string {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return ""
	}
	return fmt.Sprintf(" (uid %d)", st.Uid)
}
