package fusefs

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"syscall"
)

// A journal file is a log of records, each the whole journal at one
// moment; the last whole record is the journal. A record is
//
//	"sgj1" | length (uint32, little endian) | CRC-32C of the payload | payload (JSON)
//
// A live entry appends its records to the file it created (one file for
// the copy's life: no temporary file and rename per save, which cost a
// new inode each, a quarter of the time of a small file's close). Only
// the last record can be torn by a crash: every record but the first of a
// new file is fsync'd before the save returns, and an fsync makes every
// byte before it durable too. A torn record is a save that did not return,
// so the one before it is the journal, exactly as the old file was when a
// crash came before a rename; a file with no whole record is not trusted.
// When the log would outgrow journalLogMax, or holds anything this process
// did not write (a journal found at start), it is rewritten whole through
// a temporary file (writeJournalSync). A journal of an older version (one
// JSON document) is still read.

// journalMagic starts every record.
const journalMagic = "sgj1"

// journalHeader is the size of a record's header.
const journalHeader = len(journalMagic) + 8

// journalLogMax is the size past which a journal log is rewritten whole
// rather than appended to.
const journalLogMax = 64 << 10

// crc32c is the Castagnoli table of the records' checksums.
var crc32c = crc32.MakeTable(crc32.Castagnoli)

// journalLog is what an entry knows of its journal file; the entry's mu
// guards it.
type journalLog struct {
	// size is the length of the journal file as this process last wrote
	// it, 0 when it did not write it (yet).
	size int64
}

// encodeJournal returns j as one record.
func encodeJournal(j journal) ([]byte, error) {
	p, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	if journalHeader+len(p) >= maxJournalSize {
		return nil, fmt.Errorf("%d bytes, over the limit", journalHeader+len(p))
	}
	b := make([]byte, journalHeader, journalHeader+len(p))
	copy(b, journalMagic)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(p)))
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(p, crc32c))
	return append(b, p...), nil
}

// errNoWholeRecord: a journal file holds no whole record.
var errNoWholeRecord = errors.New("no whole record (torn or not a journal)")

// decodeJournal reads the journal in b: its last whole record, or the
// JSON document of an older version's journal.
func decodeJournal(b []byte, j *journal) error {
	if len(b) > 0 && b[0] == '{' {
		return json.Unmarshal(b, j)
	}
	var last []byte
	for len(b) >= journalHeader && string(b[:len(journalMagic)]) == journalMagic {
		n := binary.LittleEndian.Uint32(b[4:])
		if uint64(n) > uint64(len(b)-journalHeader) {
			break
		}
		p := b[journalHeader : journalHeader+int(n)]
		if crc32.Checksum(p, crc32c) != binary.LittleEndian.Uint32(b[8:]) {
			break
		}
		last = p
		b = b[journalHeader+int(n):]
	}
	if last == nil {
		return errNoWholeRecord
	}
	return json.Unmarshal(last, j)
}

// write saves j as the journal of entry id in root, fsync'd when sync is
// true: appended to the file this entry wrote before, or to a new file
// (a spare of sp when there is one) when the entry has none yet (fresh),
// else the file rewritten whole.
func (l *journalLog) write(root *os.Root, sp *spares, id string, j journal, sync, fresh bool) error {
	rec, err := encodeJournal(j)
	if err != nil {
		return fmt.Errorf("journal %s: %w", id, err)
	}
	switch {
	case fresh && l.size == 0:
		err = l.appendTo(root, sp, id, rec, sync, true)
	case l.size > 0 && l.size+int64(len(rec)) <= journalLogMax:
		err = l.appendTo(root, nil, id, rec, sync, false)
	default:
		err = errRewrite
	}
	if err == nil {
		return nil
	}
	if !errors.Is(err, errRewrite) && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("journal %s: %w", id, err)
	}
	l.size = 0
	if err := writeRecord(root, id, rec, sync); err != nil {
		return err
	}
	l.size = int64(len(rec))
	return nil
}

// errRewrite: the journal file is not the one this entry wrote; it is
// rewritten whole.
var errRewrite = errors.New("journal to rewrite")

// appendTo appends rec to the journal file of id, a new one when fresh
// (a spare of sp or a file created), else the one there, which must be a
// regular file holding l.size bytes.
func (l *journalLog) appendTo(root *os.Root, sp *spares, id string, rec []byte, sync, fresh bool) error {
	var f *os.File
	var err error
	if fresh {
		if f, err = createFile(root, sp, journalName(id), os.O_WRONLY|os.O_APPEND); err != nil {
			return err
		}
	} else if f, err = root.OpenFile(journalName(id), os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0); err != nil {
		return fmt.Errorf("%w: %w", errRewrite, err)
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() != l.size {
		f.Close()
		return errRewrite
	}
	if _, err := f.Write(rec); err != nil {
		f.Close()
		l.size = 0 // what the file holds now is not known
		return err
	}
	l.size += int64(len(rec))
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
