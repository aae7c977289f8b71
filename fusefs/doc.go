// Package fusefs owns everything between the kernel's FUSE requests and
// MinIO: the object layer (over fusefs/objstore, which alone makes the
// requests), the FUSE node tree that shows each user's workspaces as
// directories, the write-back cache (sparse local copies, journals,
// janitor) and the mount manager that mounts one view per user under a
// mount root.
//
// Semantics worth knowing:
//   - `/` of a view holds one read-only directory per granted workspace;
//     `/<slug>/<path>` is the object `<bucket>/<prefix><path>`.
//   - Directories are key prefixes; mkdir writes a zero-byte `dir/` marker.
//   - mtime is stored as X-Amz-Meta-Mtime (float seconds); objects without
//     it show LastModified.
//   - chmod is accepted for the permission bits and stored as
//     X-Amz-Meta-Mode (octal); setuid/setgid/sticky bits are refused with
//     EPERM. chown to anything but the current owner is EPERM. chmod and
//     utimes on directories are accepted and not stored.
//   - Symlinks, hard links, mknod and extended attributes fail with EPERM
//     (links, nodes) or ENOTSUP (xattrs), never silently.
//   - RENAME_EXCHANGE is EINVAL; RENAME_NOREPLACE is honoured.
//   - Writes go to a local sparse file; every close and fsync of a handle
//     that writes uploads it, and the upload error is returned from
//     close/fsync. Nothing else publishes (the rule is in writeback.go).
//     A file written sequentially from offset 0 is streamed: each part
//     the writer has gone past is sent at once in a multipart upload that
//     close completes (the object appears only then; its mtime is the one
//     when the upload began, unless set explicitly). Anything that would
//     change a part already sent (a write, a truncate), a rename, ENOSPC
//     or a failed part aborts that upload and close uploads the file whole.
//     Reopening a file whose clean local copy still matches the object's
//     ETag needs no download; an append to an object of 5 MiB or more with
//     no local copy uploads only the new bytes and joins them to the old
//     object server-side (multipart upload with a copy part).
//   - A handle whose writer went away without closing it
//     (fsapi.InterruptIoctl, sent by sftpd when an SFTP session ends with
//     the file open: dropped connection, killed session, shutdown)
//     publishes nothing. When no writer is left, the copy waits as an
//     interrupted upload cut to its contiguous written prefix, for a
//     resume; not resumed within Lifespan, it is discarded (and logged). A
//     crash leaves the same, cut to the prefix last made durable.
//   - With Options.Staging (a store the nodes of a cluster share), a
//     streamed upload records its parts sent in order as they complete;
//     interrupted, it is a staged upload that every node shows at that
//     size and any node continues (same multipart upload, never
//     downloaded; a read below that size is EREMOTE). See staging.go.
//   - A read-only view (AcquireWith ReadOnly) is mounted at
//     <MountRoot>/.readonly/<user>, so ".readonly" is not a valid user.
//   - A view nobody holds is unmounted after IdleDelay, or at once by
//     Unmount (ErrBusy while held).
//   - Counters counts every FUSE operation's answer by operation and errno
//     at the edge between go-fuse's server and the node tree (countingFS),
//     and the janitor's removals.
//   - At start, sftpgate mounts left under the mount root by a killed
//     process are aborted through fusectl (/sys/fs/fuse/connections), which
//     also frees that process if it hung in exit flushing a file of its own
//     mount, then lazily unmounted.
//   - Listings are not interruptible (a page comes quickly); reads waiting
//     on the store return EINTR when the kernel interrupts them.
//   - A sequential read of an object is served from a read-ahead window
//     (32 MiB per handle with Concurrency 4) filled by ranged GETs of up
//     to 16 MiB, and answered from it without a copy. Every window's
//     cells come out of one process-wide budget (ReadAheadBudget), in
//     fair shares; a read that gets no cell fetches just what it asks.
//     Names with control characters or invalid UTF-8 are refused
//     (EINVAL) and left out of listings. When root, each
//     mount's kernel read-ahead (/sys/class/bdi/0:N/read_ahead_kb) is
//     raised to 4 MiB, above the kernel's 128 KiB cap for FUSE.
package fusefs
