package abi

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/protogate/protogate/proto/exprotov1"
)

// The hand-written encoders must agree with the generated protobuf code in
// both directions.

func TestSocketCreatedMatchesProto(t *testing.T) {
	for _, ci := range []ConnInfo{
		{},
		{SockType: 1, Peer: Address{"127.0.0.1", 50000}, Local: Address{"0.0.0.0", 7993}},
		{SockType: 3, Peer: Address{"::1", 1}, Local: Address{"::1", 2}, HasPeerCert: true, PeerCert: CertInfo{"dev", "CN=dev,O=x"}},
		{SockType: 0, Peer: Address{strings.Repeat("h", 300), 65535}, HasPeerCert: true},
	} {
		b := AppendSocketCreated(nil, "0123456789abcdef", &ci)
		var m pb.SocketCreatedRequest
		if err := proto.Unmarshal(b, &m); err != nil {
			t.Fatalf("%+v: protobuf cannot decode ours: %v", ci, err)
		}
		got := m.GetConninfo()
		if m.GetConn() != "0123456789abcdef" || int32(got.GetSocktype()) != ci.SockType ||
			got.GetPeername().GetHost() != ci.Peer.Host || got.GetPeername().GetPort() != ci.Peer.Port ||
			got.GetSockname().GetHost() != ci.Local.Host || got.GetSockname().GetPort() != ci.Local.Port ||
			(got.GetPeercert() != nil) != ci.HasPeerCert || got.GetPeercert().GetCn() != ci.PeerCert.CN || got.GetPeercert().GetDn() != ci.PeerCert.DN {
			t.Errorf("%+v decoded by protobuf as %v", ci, &m)
		}
		// And ours decodes what protobuf encodes.
		pbBytes, err := proto.Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		conn, back, err := DecodeSocketCreated(pbBytes)
		if err != nil || conn != "0123456789abcdef" || back != ci {
			t.Errorf("round trip: %+v, %q, %v; want %+v", back, conn, err, ci)
		}
	}
}

func TestReceivedMessagesMatchesProto(t *testing.T) {
	msgs := []Message{
		{Node: "n", ID: "ABC", QoS: 2, From: "dev1", Topic: "a/b", Payload: []byte("hello"), Timestamp: 1764000000000},
		{Topic: "t", Payload: bytes.Repeat([]byte{0xff}, 70000)},
		{},
	}
	b := AppendReceivedMessages(nil, "c1")
	for i := range msgs {
		b = AppendMessageField(b, &msgs[i])
	}
	var m pb.ReceivedMessagesRequest
	if err := proto.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.GetConn() != "c1" || len(m.GetMessages()) != len(msgs) {
		t.Fatalf("decoded %v", &m)
	}
	for i, pm := range m.GetMessages() {
		w := msgs[i]
		if pm.GetNode() != w.Node || pm.GetId() != w.ID || pm.GetQos() != w.QoS || pm.GetFrom() != w.From ||
			pm.GetTopic() != w.Topic || !bytes.Equal(pm.GetPayload(), w.Payload) || pm.GetTimestamp() != w.Timestamp {
			t.Errorf("message %d: %v, want %+v", i, pm, w)
		}
	}
	pbBytes, _ := proto.Marshal(&m)
	conn, back, err := DecodeReceivedMessages(pbBytes, nil)
	if err != nil || conn != "c1" || len(back) != len(msgs) {
		t.Fatalf("decode: %q %d %v", conn, len(back), err)
	}
	for i := range back {
		if back[i].Topic != msgs[i].Topic || !bytes.Equal(back[i].Payload, msgs[i].Payload) || back[i].Timestamp != msgs[i].Timestamp {
			t.Errorf("message %d round trip: %+v", i, back[i])
		}
	}
}

func TestSocketClosedAndAuthenticateMatchProto(t *testing.T) {
	b := AppendSocketClosed(nil, "c", "{shutdown,normal}")
	var sc pb.SocketClosedRequest
	if err := proto.Unmarshal(b, &sc); err != nil || sc.GetReason() != "{shutdown,normal}" || sc.GetConn() != "c" {
		t.Fatalf("%v %v", &sc, err)
	}
	if conn, reason, err := DecodeSocketClosed(b); err != nil || conn != "c" || reason != "{shutdown,normal}" {
		t.Fatalf("%q %q %v", conn, reason, err)
	}

	ci := ClientInfo{ProtoName: "p", ProtoVer: "1", ClientID: "id", Username: "u", Mountpoint: "m/"}
	b = AppendAuthenticate(nil, "c", &ci, "pw")
	var ar pb.AuthenticateRequest
	if err := proto.Unmarshal(b, &ar); err != nil {
		t.Fatal(err)
	}
	if ar.GetClientinfo().GetClientid() != "id" || ar.GetPassword() != "pw" || ar.GetClientinfo().GetMountpoint() != "m/" {
		t.Fatalf("%v", &ar)
	}
	got, has, pw, err := DecodeAuthenticate(b)
	if err != nil || !has || got != ci || pw != "pw" {
		t.Fatalf("%+v %v %q %v", got, has, pw, err)
	}
	if _, has, _, _ := DecodeAuthenticate(AppendSocketClosed(nil, "c", "")); has {
		t.Error("clientinfo reported present")
	}
}

func TestDecodeErrors(t *testing.T) {
	for name, b := range map[string][]byte{
		"truncated tag":      {0x80},
		"truncated length":   {0x0a, 0x05, 'a'},
		"wrong wire type":    {0x08, 0x01}, // field 1 as varint; conn is bytes
		"bad nested message": {0x12, 0x02, 0x12, 0x05},
	} {
		if _, _, err := DecodeSocketCreated(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
	// Unknown fields are skipped.
	b := append(AppendSocketClosed(nil, "c", "r"), 0x78, 0x01) // field 15 varint
	if _, r, err := DecodeSocketClosed(b); err != nil || r != "r" {
		t.Errorf("unknown field: %q %v", r, err)
	}
}

func TestStatus(t *testing.T) {
	for s := StatusSuccess; s <= StatusPermissionDeny; s++ {
		if !s.Valid() || s.String() != pb.ResultCode(s).String() {
			t.Errorf("status %d: %q valid=%v, want %q", s, s, s.Valid(), pb.ResultCode(s).String())
		}
	}
	if Status(6).Valid() || Status(-1).Valid() || Status(-7).String() != "Status(-7)" {
		t.Error("statuses outside ResultCode accepted")
	}
	if StatusSuccess.Err() != nil || !errors.Is(StatusNotAlive.Err(), StatusNotAlive) {
		t.Error("Err")
	}
}

func FuzzDecodeSocketCreated(f *testing.F) {
	f.Add(AppendSocketCreated(nil, "c", &ConnInfo{SockType: 1, Peer: Address{"1.2.3.4", 5}, HasPeerCert: true}))
	f.Fuzz(func(t *testing.T, b []byte) {
		conn, ci, err := DecodeSocketCreated(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		conn2, ci2, err := DecodeSocketCreated(AppendSocketCreated(nil, conn, &ci))
		if err != nil || conn2 != conn || ci2 != ci {
			t.Fatalf("re-encode: %+v %q %v, want %+v %q", ci2, conn2, err, ci, conn)
		}
	})
}

func FuzzDecodeReceivedMessages(f *testing.F) {
	b := AppendReceivedMessages(nil, "c")
	b = AppendMessageField(b, &Message{Topic: "a", Payload: []byte("p"), QoS: 1})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		conn, msgs, err := DecodeReceivedMessages(b, nil)
		if err != nil {
			return
		}
		out := AppendReceivedMessages(nil, conn)
		for i := range msgs {
			out = AppendMessageField(out, &msgs[i])
		}
		conn2, msgs2, err := DecodeReceivedMessages(out, nil)
		if err != nil || conn2 != conn || len(msgs2) != len(msgs) {
			t.Fatalf("re-encode: %q %d %v", conn2, len(msgs2), err)
		}
	})
}

func FuzzDecodeAuthenticate(f *testing.F) {
	f.Add(AppendAuthenticate(nil, "c", &ClientInfo{ClientID: "x"}, "pw"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ci, has, pw, err := DecodeAuthenticate(b)
		if err != nil {
			return
		}
		ci2, has2, pw2, err := DecodeAuthenticate(AppendAuthenticate(nil, "", &ci, pw))
		if err != nil || ci2 != ci || pw2 != pw || (has && !has2) {
			t.Fatalf("re-encode: %+v %q %v", ci2, pw2, err)
		}
	})
}

func FuzzDecodeSocketClosed(f *testing.F) {
	f.Add(AppendSocketClosed(nil, "c", "{shutdown,normal}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		conn, reason, err := DecodeSocketClosed(b)
		if err != nil {
			return
		}
		c2, r2, err := DecodeSocketClosed(AppendSocketClosed(nil, conn, reason))
		if err != nil || c2 != conn || r2 != reason {
			t.Fatal("re-encode mismatch")
		}
	})
}

func BenchmarkAppendMessageField(b *testing.B) {
	m := Message{Node: "protogate-1", ID: "0123456789ABCDEF0123456789ABCDEF", QoS: 1, From: "dev", Topic: "a/b/c", Payload: make([]byte, 64), Timestamp: 1764000000000}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendMessageField(AppendReceivedMessages(buf[:0], "0123456789abcdef"), &m)
	}
}
