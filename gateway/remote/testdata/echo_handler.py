#!/usr/bin/env python3
"""An ExProto echo handler written with grpcio, the way EMQX's Python
examples are, to check that protogate serves a non-Go gRPC stack unchanged.

It serves emqx.exproto.v1.ConnectionUnaryHandler and calls the gateway's
ConnectionAdapter back over plaintext gRPC (with --token, every call carries
the metadata "authorization: Bearer <token>"):

  OnSocketCreated    -> Authenticate(clientid "test"), Subscribe("test/echo",
                        qos 1), StartTimer(KEEPALIVE, --keepalive), in order,
                        before returning
  OnReceivedBytes    -> Publish("test/echo", qos 1, bytes)
  OnReceivedMessages -> Send(conn, payload) for each message
  OnTimerTimeout     -> Close(conn)
  OnSocketClosed     -> nothing

Every connection authenticates as clientid "test", so a new connection takes
the client id over and the gateway closes the older one.

Needs python3-grpcio and python3-protobuf, and the stubs exproto_pb2.py and
exproto_pb2_grpc.py generated from proto/exproto.proto, found through --stubs
DIR or PYTHONPATH. Prints "ready" on stdout once listening; exits 0 on SIGTERM
or SIGINT, 3 if it cannot bind --listen, 2 on bad arguments.
"""

import argparse
import signal
import sys
from concurrent import futures

ADAPTER_CALL_TIMEOUT = 30.0  # seconds; EMQX's examples set none
TOPIC = "test/echo"


def log(*args):
    print("echo_handler:", *args, file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:9001",
                   help="host:port this handler serves on")
    p.add_argument("--adapter", default="127.0.0.1:9100",
                   help="host:port of the gateway's ConnectionAdapter (plaintext)")
    p.add_argument("--keepalive", type=int, default=20,
                   help="keepalive interval in seconds passed to StartTimer")
    p.add_argument("--stubs", default="",
                   help="directory holding exproto_pb2.py and exproto_pb2_grpc.py")
    p.add_argument("--token", default="",
                   help="adapter token sent with every adapter call as the metadata "
                        "'authorization: Bearer <token>' (protogate's adapter_token)")
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    # Block the stop signals before grpc starts any thread, so that every
    # thread inherits the mask and the main thread takes them in sigwait
    # below, at once, whichever thread the kernel picked.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    if args.stubs:
        sys.path.insert(0, args.stubs)

    import grpc
    import exproto_pb2 as pb
    import exproto_pb2_grpc as pb_grpc

    # Loopback only: never route through an HTTP proxy from the environment.
    channel_opts = [("grpc.enable_http_proxy", 0)]

    class EchoHandler(pb_grpc.ConnectionUnaryHandlerServicer):
        def __init__(self, adapter, token):
            self.adapter = adapter
            # How a handler proves itself to protogate's adapter when its
            # handler has an adapter_token; without one it sends none, as
            # handlers written for EMQX do.
            self.metadata = [("authorization", "Bearer " + token)] if token else None

        def _call(self, name, request):
            """Calls one ConnectionAdapter RPC; reports a non-SUCCESS code on
            stderr. A gRPC-level failure propagates, so the callback fails
            and the gateway closes the client."""
            try:
                resp = getattr(self.adapter, name)(request, timeout=ADAPTER_CALL_TIMEOUT,
                                                   metadata=self.metadata)
            except grpc.RpcError as e:
                log(f"{name}({request.conn}): gRPC error {e.code()}: {e.details()}")
                raise
            if resp.code != pb.SUCCESS:
                log(f"{name}({request.conn}): {pb.ResultCode.Name(resp.code)}: {resp.message}")
            return resp

        def OnSocketCreated(self, request, context):
            conn = request.conn
            client = pb.ClientInfo(proto_name="exproto-echo-svr", proto_ver="1.0",
                                   clientid="test", username="test")
            self._call("Authenticate", pb.AuthenticateRequest(
                conn=conn, clientinfo=client, password="password"))
            self._call("Subscribe", pb.SubscribeRequest(conn=conn, topic=TOPIC, qos=1))
            self._call("StartTimer", pb.TimerRequest(
                conn=conn, type=pb.KEEPALIVE, interval=args.keepalive))
            return pb.EmptySuccess()

        def OnReceivedBytes(self, request, context):
            self._call("Publish", pb.PublishRequest(
                conn=request.conn, topic=TOPIC, qos=1, payload=request.bytes))
            return pb.EmptySuccess()

        def OnReceivedMessages(self, request, context):
            for m in request.messages:
                self._call("Send", pb.SendBytesRequest(conn=request.conn, bytes=m.payload))
            return pb.EmptySuccess()

        def OnTimerTimeout(self, request, context):
            self._call("Close", pb.CloseSocketRequest(conn=request.conn))
            return pb.EmptySuccess()

        def OnSocketClosed(self, request, context):
            return pb.EmptySuccess()

    channel = grpc.insecure_channel(args.adapter, options=channel_opts)
    adapter = pb_grpc.ConnectionAdapterStub(channel)
    # grpcio sets SO_REUSEPORT by default; turn it off so that a port that
    # is already taken is an error here rather than a shared listener.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                         options=channel_opts + [("grpc.so_reuseport", 0)])
    pb_grpc.add_ConnectionUnaryHandlerServicer_to_server(EchoHandler(adapter, args.token), server)
    try:
        port = server.add_insecure_port(args.listen)
    except RuntimeError as e:
        log(f"cannot listen on {args.listen}: {e}")
        return 3
    if port == 0:
        log(f"cannot listen on {args.listen}")
        return 3
    server.start()
    print("ready", flush=True)

    signum = signal.sigwait(stop_signals)
    server.stop(grace=2).wait()
    channel.close()
    log(f"stopped on {signal.Signals(signum).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
