package protogate_test

import (
	"bytes"

	protogate "github.com/protogate/protogate/sdk/go"
)

// lineEcho answers each complete line with the line in upper case. Lines
// may arrive split over several callbacks, so each connection keeps the
// bytes of its unfinished line.
type lineEcho struct {
	protogate.Base
	partial map[protogate.Conn][]byte
	out     []byte // reused for every answer
}

func (h *lineEcho) OnSocketCreated(c protogate.Conn, _ protogate.ConnInfo) error {
	h.partial[c] = nil
	return nil
}

func (h *lineEcho) OnReceivedBytes(c protogate.Conn, b []byte) error {
	buf := append(h.partial[c], b...) // copy: b is valid only during the call
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		h.out = append(h.out[:0], buf[:i+1]...)
		for j, ch := range h.out {
			if 'a' <= ch && ch <= 'z' {
				h.out[j] = ch - 'a' + 'A'
			}
		}
		if err := c.Send(h.out); err != nil {
			return err
		}
		buf = buf[i+1:]
	}
	h.partial[c] = append(h.partial[c][:0], buf...)
	return nil
}

func (h *lineEcho) OnSocketClosed(c protogate.Conn, _ string) error {
	delete(h.partial, c)
	return nil
}

// A guest is a main package that registers its handler from init and has
// an empty main. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o lineecho.wasm .
func Example() {
	// In package main:
	//
	//	func init() { protogate.Register(&lineEcho{partial: make(map[protogate.Conn][]byte)}) }
	//
	//	func main() {}
	protogate.Register(&lineEcho{partial: make(map[protogate.Conn][]byte)})
}
