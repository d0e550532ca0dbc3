//go:build !unix

package main

import "syscall"

// fileLimit reports that the limit on open files is not known here.
func fileLimit() (uint64, bool) { return 0, false }

// peekClosed cannot tell here; hold counts every connection still in hand
// as held.
func peekClosed(syscall.Conn) bool { return false }
