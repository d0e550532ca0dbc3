// Command echo is the smallest protogate guest: it sends every chunk of
// bytes it receives back to the connection it came from. It allocates
// nothing per message: the chunk is a slice of the module's inbox, and Send
// hands its pointer to the host, which copies it.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o echo.wasm .
package main

import protogate "github.com/protogate/protogate/sdk/go"

// echo is the handler; it has no state.
type echo struct{ protogate.Base }

// OnReceivedBytes sends b back.
func (echo) OnReceivedBytes(c protogate.Conn, b []byte) error {
	return c.Send(b)
}

func init() { protogate.Register(echo{}) }
