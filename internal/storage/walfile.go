package storage

import "github.com/ncruces/go-sqlite3/vfs"

// SQLite writes each frame of the write-ahead log with two writes: the
// frame's 24-byte header, then its page right after it. Each is a system
// call, and in the send path those calls were the largest part of a
// commit (two per page the commit dirtied). The "matrixos" VFS is the
// operating system's with one change: a log file holds a frame header
// back until the write that follows it, and when that write is the page
// right after it, writes both with one call. The header is written before
// anything else is done with the file (a read, a sync, a truncation, any
// other write, closing it), so the file's contents are the same whenever
// SQLite or another connection could look at them: SQLite publishes a
// frame to readers only after writing its page.

// walVFSName names the VFS the writer connections use.
const walVFSName = "matrixos"

// walFrameHeader is the size of a log frame's header.
const walFrameHeader = 24

func init() {
	vfs.Register(walVFSName, walVFS{vfs.Find("os").(vfs.VFSFilename)})
}

// walVFS is the operating system's VFS, with log files that write a
// frame's header and page together (walFile).
type walVFS struct{ vfs.VFSFilename }

// Open opens name as the operating system's VFS does.
func (v walVFS) Open(name string, flags vfs.OpenFlag) (vfs.File, vfs.OpenFlag, error) {
	f, out, err := v.VFSFilename.Open(name, flags)
	return wrapWAL(f, flags, err), out, err
}

// OpenFilename opens name as the operating system's VFS does.
func (v walVFS) OpenFilename(name *vfs.Filename, flags vfs.OpenFlag) (vfs.File, vfs.OpenFlag, error) {
	f, out, err := v.VFSFilename.OpenFilename(name, flags)
	return wrapWAL(f, flags, err), out, err
}

func wrapWAL(f vfs.File, flags vfs.OpenFlag, err error) vfs.File {
	if err != nil || flags&vfs.OPEN_WAL == 0 {
		return f
	}
	return &walFile{File: f}
}

// walFile is a log file that holds a frame header back until the write
// after it.
type walFile struct {
	vfs.File
	header    [walFrameHeader]byte
	headerOff int64 // where the held header goes
	held      bool
	buf       []byte // header and page, written together
}

// WriteAt holds a frame header back, writes it with the page that
// follows it, and writes anything else after the held header.
func (f *walFile) WriteAt(p []byte, off int64) (int, error) {
	if f.held && off == f.headerOff+walFrameHeader {
		f.held = false
		f.buf = append(append(f.buf[:0], f.header[:]...), p...)
		if _, err := f.File.WriteAt(f.buf, f.headerOff); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if err := f.flush(); err != nil {
		return 0, err
	}
	if len(p) == walFrameHeader {
		copy(f.header[:], p)
		f.headerOff, f.held = off, true
		return len(p), nil
	}
	return f.File.WriteAt(p, off)
}

// flush writes the held header, if any.
func (f *walFile) flush() error {
	if !f.held {
		return nil
	}
	f.held = false
	_, err := f.File.WriteAt(f.header[:], f.headerOff)
	return err
}

// ReadAt reads after writing the held header.
func (f *walFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

// Truncate truncates after writing the held header.
func (f *walFile) Truncate(size int64) error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.File.Truncate(size)
}

// Sync syncs after writing the held header.
func (f *walFile) Sync(flags vfs.SyncFlag) error {
	if err := f.flush(); err != nil {
		return err
	}
	return f.File.Sync(flags)
}

// Size reports the size after writing the held header.
func (f *walFile) Size() (int64, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.File.Size()
}

// Close closes after writing the held header.
func (f *walFile) Close() error {
	err := f.flush()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	return err
}
