package remote_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/protogate/protogate/gateway/remote"
	pb "github.com/protogate/protogate/proto/exprotov1"
)

// TestAdapterRecoversPanics: a panic while serving an rpc (here, an adapter
// built without a server, a programming error) is answered UNKNOWN and
// counted; grpc-go would otherwise let it end the process.
func TestAdapterRecoversPanics(t *testing.T) {
	a := remote.NewAdapter(nil, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	const conn = "0000000000000001"
	calls := map[string]func() (*pb.CodeResponse, error){
		"Send":         func() (*pb.CodeResponse, error) { return a.Send(ctx, &pb.SendBytesRequest{Conn: conn}) },
		"Close":        func() (*pb.CodeResponse, error) { return a.Close(ctx, &pb.CloseSocketRequest{Conn: conn}) },
		"Authenticate": func() (*pb.CodeResponse, error) { return a.Authenticate(ctx, &pb.AuthenticateRequest{Conn: conn}) },
		"StartTimer":   func() (*pb.CodeResponse, error) { return a.StartTimer(ctx, &pb.TimerRequest{Conn: conn}) },
		"Publish":      func() (*pb.CodeResponse, error) { return a.Publish(ctx, &pb.PublishRequest{Conn: conn, Topic: "t"}) },
		"RawPublish":   func() (*pb.CodeResponse, error) { return a.RawPublish(ctx, &pb.RawPublishRequest{Topic: "t"}) },
		"Subscribe": func() (*pb.CodeResponse, error) {
			return a.Subscribe(ctx, &pb.SubscribeRequest{Conn: conn, Topic: "t"})
		},
		"Unsubscribe": func() (*pb.CodeResponse, error) {
			return a.Unsubscribe(ctx, &pb.UnsubscribeRequest{Conn: conn, Topic: "t"})
		},
	}
	n := uint64(0)
	for name, call := range calls {
		resp, err := call()
		n++
		if err != nil || resp.GetCode() != pb.ResultCode_UNKNOWN {
			t.Errorf("%s: %v, %v; want code UNKNOWN", name, resp, err)
		}
		if got := a.Panics(); got != n {
			t.Errorf("%s: Panics() = %d, want %d", name, got, n)
		}
	}
}
