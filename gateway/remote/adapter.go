package remote

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"

	"google.golang.org/grpc"

	"github.com/protogate/protogate/gateway"
	pb "github.com/protogate/protogate/proto/exprotov1"
)

// Adapter serves emqx.exproto.v1.ConnectionAdapter for a gateway.Server: the
// calls remote handlers make on connections. Like EMQX, every rpc returns
// gRPC status OK and reports the outcome in CodeResponse; unlike EMQX it
// returns PARAMS_TYPE_ERROR (4) for malformed parameters instead of UNKNOWN.
// Adapter is safe for concurrent use.
type Adapter struct {
	pb.UnimplementedConnectionAdapterServer
	srv *gateway.Server
	log *slog.Logger

	warnedMountpoint atomic.Bool
	panics           atomic.Uint64
}

var _ pb.ConnectionAdapterServer = (*Adapter)(nil)

// NewAdapter returns an Adapter acting on the connections of srv.
func NewAdapter(srv *gateway.Server, log *slog.Logger) *Adapter {
	if log == nil {
		log = slog.Default()
	}
	return &Adapter{srv: srv, log: log}
}

// Register registers the adapter service on s.
func (a *Adapter) Register(s *grpc.Server) { pb.RegisterConnectionAdapterServer(s, a) }

var success = &pb.CodeResponse{}

// recoverRPC, deferred by every rpc, turns a panic while serving it into an
// UNKNOWN reply: a bug reached through one handler's call must not end the
// process and every device's connection with it (grpc-go does not recover
// panics of services).
func (a *Adapter) recoverRPC(rpc string, resp **pb.CodeResponse, err *error) {
	r := recover()
	if r == nil {
		return
	}
	a.panics.Add(1)
	a.log.Error("remote: recovered a panic in an adapter rpc", "rpc", rpc,
		"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	*resp, *err = &pb.CodeResponse{Code: pb.ResultCode_UNKNOWN, Message: "remote: internal error in " + rpc}, nil
}

// Panics returns how many rpcs panicked and were answered UNKNOWN.
func (a *Adapter) Panics() uint64 { return a.panics.Load() }

// reply turns an error into a CodeResponse.
func (a *Adapter) reply(rpc, conn string, err error) (*pb.CodeResponse, error) {
	if err == nil {
		return success, nil
	}
	code := gateway.CodeOf(err)
	a.log.Debug("remote: adapter call refused", "rpc", rpc, "conn", conn, "code", code, "err", err)
	return &pb.CodeResponse{Code: pb.ResultCode(code), Message: err.Error()}, nil
}

// Send implements pb.ConnectionAdapterServer.
func (a *Adapter) Send(_ context.Context, req *pb.SendBytesRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("Send", &resp, &err)
	c, err := a.srv.Lookup(req.GetConn())
	if err == nil {
		err = c.Send(req.GetBytes())
	}
	return a.reply("Send", req.GetConn(), err)
}

// Close implements pb.ConnectionAdapterServer.
func (a *Adapter) Close(_ context.Context, req *pb.CloseSocketRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("Close", &resp, &err)
	c, err := a.srv.Lookup(req.GetConn())
	if err == nil {
		err = c.Close()
	}
	return a.reply("Close", req.GetConn(), err)
}

// Authenticate implements pb.ConnectionAdapterServer. The password is never
// logged.
func (a *Adapter) Authenticate(ctx context.Context, req *pb.AuthenticateRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("Authenticate", &resp, &err)
	c, err := a.srv.Lookup(req.GetConn())
	if err == nil {
		ci := req.GetClientinfo()
		if ci == nil {
			err = gateway.Errorf(gateway.CodeRequiredParamsMissed, "remote: clientinfo is missing")
		} else {
			if ci.GetMountpoint() != "" && a.warnedMountpoint.CompareAndSwap(false, true) {
				a.log.Warn("remote: clientinfo.mountpoint is deprecated and ignored; set mountpoint on the listener",
					"conn", req.GetConn(), "mountpoint", ci.GetMountpoint())
			}
			err = c.Authenticate(ctx, &gateway.ClientInfo{
				ProtoName: ci.GetProtoName(),
				ProtoVer:  ci.GetProtoVer(),
				ClientID:  ci.GetClientid(),
				Username:  ci.GetUsername(),
			}, req.GetPassword())
		}
	}
	return a.reply("Authenticate", req.GetConn(), err)
}

// StartTimer implements pb.ConnectionAdapterServer.
func (a *Adapter) StartTimer(_ context.Context, req *pb.TimerRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("StartTimer", &resp, &err)
	c, err := a.srv.Lookup(req.GetConn())
	if err == nil {
		err = c.StartTimer(gateway.TimerType(req.GetType()), req.GetInterval())
	}
	return a.reply("StartTimer", req.GetConn(), err)
}

// Publish implements pb.ConnectionAdapterServer.
func (a *Adapter) Publish(_ context.Context, req *pb.PublishRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("Publish", &resp, &err)
	c, err := a.srv.Lookup(req.GetConn())
	if err == nil {
		err = c.Publish(req.GetTopic(), req.GetQos(), req.GetPayload())
	}
	return a.reply("Publish", req.GetConn(), err)
}

// RawPublish implements pb.ConnectionAdapterServer.
func (a *Adapter) RawPublish(_ context.Context, req *pb.RawPublishRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("RawPublish", &resp, &err)
	return a.reply("RawPublish", "", a.srv.RawPublish(req.GetTopic(), req.GetQos(), req.GetPayload()))
}

// Subscribe implements pb.ConnectionAdapterServer.
func (a *Adapter) Subscribe(ctx context.Context, req *pb.SubscribeRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("Subscribe", &resp, &err)
	c, err := a.srv.Lookup(req.GetConn())
	if err == nil {
		err = c.Subscribe(ctx, req.GetTopic(), req.GetQos())
	}
	return a.reply("Subscribe", req.GetConn(), err)
}

// Unsubscribe implements pb.ConnectionAdapterServer.
func (a *Adapter) Unsubscribe(_ context.Context, req *pb.UnsubscribeRequest) (resp *pb.CodeResponse, err error) {
	defer a.recoverRPC("Unsubscribe", &resp, &err)
	c, err := a.srv.Lookup(req.GetConn())
	if err == nil {
		err = c.Unsubscribe(req.GetTopic())
	}
	return a.reply("Unsubscribe", req.GetConn(), err)
}
