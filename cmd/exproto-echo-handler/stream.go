package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	protogate "github.com/protogate/protogate/sdk/go"
	"github.com/protogate/protogate/sdk/go/serve"
)

// laneEcho is the echo as an sdk/go Handler, for -service stream. Like any
// sdk/go Handler it runs one callback at a time.
type laneEcho struct {
	protogate.Base
	authenticate bool
}

// OnSocketCreated authenticates the connection with clientid = its handle
// when asked to, closing it if the gateway refuses.
func (e *laneEcho) OnSocketCreated(c protogate.Conn, _ protogate.ConnInfo) error {
	if !e.authenticate {
		return nil
	}
	err := c.Authenticate(protogate.ClientInfo{ProtoName: "echo", ProtoVer: "1", ClientID: fmt.Sprintf("%016x", uint64(c))}, "")
	if err != nil {
		protogate.Log(protogate.LevelWarn, "authenticate refused: "+err.Error())
		return c.Close()
	}
	return nil
}

// OnReceivedBytes sends b back.
func (e *laneEcho) OnReceivedBytes(c protogate.Conn, b []byte) error {
	return c.Send(b)
}

// runStream serves the echo on the fast lane until ctx is done.
func runStream(ctx context.Context, listen string, authenticate bool, log *slog.Logger, ready func(net.Addr)) error {
	protogate.Register(&laneEcho{authenticate: authenticate})
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	log.Info("listening", "listen", ln.Addr().String(), "authenticate", authenticate,
		"services", []string{"protogate.v1.StreamHandler"})
	if ready != nil {
		ready(ln.Addr())
	}
	return serve.Serve(ctx, ln)
}
