package abi

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/protogate/protogate/proto/exprotov1"
)

// The decoders, by the selector byte of FuzzDecodeMatchesProto.
const (
	decSocketCreated = iota
	decConnInfo
	decMessage
	decReceivedMessages
	decSocketClosed
	decAuthenticate
	numDecoders
)

// FuzzDecodeMatchesProto runs one of the hand-written decoders (the
// selector picks it) and google.golang.org/protobuf on the same bytes, with
// the generated type of proto/exproto.proto, and checks that they agree:
//
//   - when both accept, every field has the same value (strings, numbers
//     truncated the same way, payloads, the presence of peercert and
//     clientinfo, the messages in order);
//   - ours may refuse what protobuf accepts only for a wire type it does not
//     take: groups (3, 4), which no proto3 encoder writes, and a known field
//     with the wrong wire type, which protobuf keeps as an unknown field but
//     ours refuses on purpose (TestDecodeErrors);
//   - protobuf may refuse what ours accepts only for invalid UTF-8 in a
//     string field: ours does not check it (a guest or the host gets the
//     bytes as they are).
//
// One divergence is left out: protobuf merges repeated occurrences of a
// singular message field, while DecodeSocketCreated keeps the last
// conninfo. Neither the host nor any encoder writes a field twice; the
// check below skips inputs with more than one conninfo.
func FuzzDecodeMatchesProto(f *testing.F) {
	ci := ConnInfo{SockType: 3, Peer: Address{"192.0.2.1", 50000}, Local: Address{"::1", 7993}, HasPeerCert: true, PeerCert: CertInfo{"dev", "CN=dev,O=x"}}
	msg := Message{Node: "n", ID: "ABC", QoS: 2, From: "dev1", Topic: "a/b", Payload: []byte("hello"), Timestamp: 1764000000000}
	rm := AppendMessageField(AppendMessageField(AppendReceivedMessages(nil, "c1"), &msg), &Message{Topic: "t"})
	for _, s := range []struct {
		kind uint8
		b    []byte
	}{
		{decSocketCreated, AppendSocketCreated(nil, "0123456789abcdef", &ci)},
		{decSocketCreated, AppendSocketCreated(nil, "c", &ConnInfo{})},
		{decConnInfo, AppendConnInfo(nil, &ci)},
		{decMessage, AppendMessage(nil, &msg)},
		{decReceivedMessages, rm},
		{decSocketClosed, AppendSocketClosed(nil, "c", "{shutdown,normal}")},
		{decAuthenticate, AppendAuthenticate(nil, "c", &ClientInfo{"p", "1", "id", "u", "m/"}, "pw")},
		{decAuthenticate, AppendSocketClosed(nil, "c", "")},
		{decSocketClosed, append(AppendSocketClosed(nil, "c", "r"), 0x7b, 0x7c)},       // an empty group, field 15
		{decSocketClosed, append(AppendSocketClosed(nil, "c", "r"), 0x0d, 1, 2, 3, 4)}, // conn as fixed32
		{decSocketClosed, []byte{0x08, 0x01}},                                          // conn as a varint
		{decSocketClosed, []byte{0x0a, 0x02, 0xc3, 0x28}},                              // invalid UTF-8
		{decMessage, []byte{0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{decMessage, []byte{0x18, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02}},
		{decConnInfo, []byte{0x12, 0x03, 0x0a, 0x01, 'a', 0x12, 0x02, 0x10, 0x05}}, // peername twice: merged
		{decAuthenticate, []byte{0x12, 0x02, 0x1a, 0x00, 0x12, 0x03, 0x22, 0x01, 'u'}},
		{decReceivedMessages, []byte{0x12, 0x00, 0x12, 0x00, 0x0a, 0x00}},
		{decSocketCreated, []byte{0x80}},
		{decSocketCreated, []byte{0xfa, 0xff, 0xff, 0xff, 0x0f, 0x00}}, // field 2^29-1
	} {
		f.Add(s.kind, s.b)
	}
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		kind %= numDecoders
		var m proto.Message
		switch kind {
		case decSocketCreated:
			m = &pb.SocketCreatedRequest{}
		case decConnInfo:
			m = &pb.ConnInfo{}
		case decMessage:
			m = &pb.Message{}
		case decReceivedMessages:
			m = &pb.ReceivedMessagesRequest{}
		case decSocketClosed:
			m = &pb.SocketClosedRequest{}
		case decAuthenticate:
			m = &pb.AuthenticateRequest{}
		}
		pbErr := proto.Unmarshal(b, m)

		var got, want []string // the fields, as the two decoders see them
		var err error
		switch kind {
		case decSocketCreated:
			var conn string
			var ci ConnInfo
			conn, ci, err = DecodeSocketCreated(b)
			if countField(b, 2) > 1 {
				return // the known divergence: protobuf merges, ours keeps the last
			}
			p := m.(*pb.SocketCreatedRequest)
			got, want = append([]string{conn}, connInfoFields(ci)...), append([]string{p.GetConn()}, pbConnInfoFields(p.GetConninfo())...)
		case decConnInfo:
			var ci ConnInfo
			ci, err = DecodeConnInfo(b)
			got, want = connInfoFields(ci), pbConnInfoFields(m.(*pb.ConnInfo))
		case decMessage:
			var msg Message
			msg, err = DecodeMessage(b)
			got, want = messageFields(&msg), pbMessageFields(m.(*pb.Message))
		case decReceivedMessages:
			var conn string
			var msgs []Message
			conn, msgs, err = DecodeReceivedMessages(b, nil)
			p := m.(*pb.ReceivedMessagesRequest)
			got, want = []string{conn, itoa(int64(len(msgs)))}, []string{p.GetConn(), itoa(int64(len(p.GetMessages())))}
			for i := range msgs {
				got = append(got, messageFields(&msgs[i])...)
			}
			for _, pm := range p.GetMessages() {
				want = append(want, pbMessageFields(pm)...)
			}
		case decSocketClosed:
			var conn, reason string
			conn, reason, err = DecodeSocketClosed(b)
			p := m.(*pb.SocketClosedRequest)
			got, want = []string{conn, reason}, []string{p.GetConn(), p.GetReason()}
		case decAuthenticate:
			ci, has, pw, derr := DecodeAuthenticate(b)
			err = derr
			p := m.(*pb.AuthenticateRequest)
			got = []string{ci.ProtoName, ci.ProtoVer, ci.ClientID, ci.Username, ci.Mountpoint, pw, boolString(has)}
			pc := p.GetClientinfo()
			want = []string{pc.GetProtoName(), pc.GetProtoVer(), pc.GetClientid(), pc.GetUsername(), pc.GetMountpoint(), p.GetPassword(), boolString(pc != nil)}
		}

		switch {
		case err != nil && pbErr == nil:
			if !strings.Contains(err.Error(), "wire type") {
				t.Fatalf("decoder %d refuses % x (%v), protobuf accepts it as %v", kind, b, err, m)
			}
		case err == nil && pbErr != nil:
			if !strings.Contains(pbErr.Error(), "invalid UTF-8") {
				t.Fatalf("decoder %d accepts % x as %q, protobuf refuses it: %v", kind, b, got, pbErr)
			}
		case err == nil && pbErr == nil && !slices.Equal(got, want):
			t.Fatalf("decoder %d: % x\nours     %q\nprotobuf %q", kind, b, got, want)
		}
	})
}

// countField counts the occurrences of field num at the top level of the
// message in b, up to the first malformed field.
func countField(b []byte, num protowire.Number) int {
	n := 0
	for len(b) > 0 {
		got, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return n
		}
		if got == num {
			n++
		}
		b = b[l:]
		if l = protowire.ConsumeFieldValue(got, typ, b); l < 0 {
			return n
		}
		b = b[l:]
	}
	return n
}

func boolString(v bool) string {
	if v {
		return "true"
	}
	return "false"
}

// uintString formats v exactly (itoa takes an int64).
func uintString(v uint64) string { return itoa(int64(v>>32)) + ":" + itoa(int64(v&(1<<32-1))) }

func connInfoFields(ci ConnInfo) []string {
	return []string{itoa(int64(ci.SockType)), ci.Peer.Host, uintString(uint64(ci.Peer.Port)),
		ci.Local.Host, uintString(uint64(ci.Local.Port)), boolString(ci.HasPeerCert), ci.PeerCert.CN, ci.PeerCert.DN}
}

func pbConnInfoFields(p *pb.ConnInfo) []string {
	return []string{itoa(int64(p.GetSocktype())), p.GetPeername().GetHost(), uintString(uint64(p.GetPeername().GetPort())),
		p.GetSockname().GetHost(), uintString(uint64(p.GetSockname().GetPort())), boolString(p.GetPeercert() != nil),
		p.GetPeercert().GetCn(), p.GetPeercert().GetDn()}
}

func messageFields(m *Message) []string {
	return []string{m.Node, m.ID, uintString(uint64(m.QoS)), m.From, m.Topic, string(m.Payload), uintString(m.Timestamp)}
}

func pbMessageFields(m *pb.Message) []string {
	return []string{m.GetNode(), m.GetId(), uintString(uint64(m.GetQos())), m.GetFrom(), m.GetTopic(), string(m.GetPayload()), uintString(m.GetTimestamp())}
}
