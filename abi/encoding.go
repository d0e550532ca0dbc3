package abi

// The structured payloads of ABI v1 are protobuf encodings of
// emqx.exproto.v1 messages. These types and functions encode and decode the
// messages the ABI uses without the protobuf runtime (which would add
// megabytes to every Go guest). Field numbers are those of
// proto/exproto.proto; the tests check them against the generated code.

// Address is emqx.exproto.v1.Address.
type Address struct {
	Host string // 1
	Port uint32 // 2
}

// CertInfo is emqx.exproto.v1.CertificateInfo.
type CertInfo struct {
	CN string // 1
	DN string // 2
}

// ConnInfo is emqx.exproto.v1.ConnInfo. HasPeerCert says whether PeerCert
// was present.
type ConnInfo struct {
	SockType    int32    // 1
	Peer        Address  // 2 peername
	Local       Address  // 3 sockname
	PeerCert    CertInfo // 4
	HasPeerCert bool
}

// ClientInfo is emqx.exproto.v1.ClientInfo.
type ClientInfo struct {
	ProtoName  string // 1
	ProtoVer   string // 2
	ClientID   string // 3
	Username   string // 4
	Mountpoint string // 5, ignored by protogate
}

// Message is emqx.exproto.v1.Message. After decoding, Payload aliases the
// decoded buffer.
type Message struct {
	Node      string // 1
	ID        string // 2
	QoS       uint32 // 3
	From      string // 4
	Topic     string // 5
	Payload   []byte // 6
	Timestamp uint64 // 7
}

func appendString(b []byte, num int, s string) []byte {
	if s == "" {
		return b
	}
	b = appendTag(b, num, wireBytes)
	b = appendVarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, num int, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = appendTag(b, num, wireBytes)
	b = appendVarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendUint(b []byte, num int, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = appendTag(b, num, wireVarint)
	return appendVarint(b, v)
}

// appendMessage appends field num holding a sub-message produced by enc.
func appendMessage(b []byte, num int, enc func([]byte) []byte) []byte {
	b = appendTag(b, num, wireBytes)
	// Reserve one byte for the length, the common case, and shift if the
	// sub-message turns out longer than 127 bytes.
	at := len(b)
	b = append(b, 0)
	b = enc(b)
	n := len(b) - at - 1
	size := sizeVarint(uint64(n))
	if size == 1 {
		b[at] = byte(n)
		return b
	}
	for range size - 1 {
		b = append(b, 0)
	}
	copy(b[at+size:], b[at+1:at+1+n])
	appendVarint(b[at:at], uint64(n))
	return b
}

func appendAddress(b []byte, a *Address) []byte {
	b = appendString(b, 1, a.Host)
	return appendUint(b, 2, uint64(a.Port))
}

// AppendConnInfo appends the encoding of ci.
func AppendConnInfo(b []byte, ci *ConnInfo) []byte {
	b = appendUint(b, 1, uint64(ci.SockType))
	b = appendMessage(b, 2, func(b []byte) []byte { return appendAddress(b, &ci.Peer) })
	b = appendMessage(b, 3, func(b []byte) []byte { return appendAddress(b, &ci.Local) })
	if ci.HasPeerCert {
		b = appendMessage(b, 4, func(b []byte) []byte {
			b = appendString(b, 1, ci.PeerCert.CN)
			return appendString(b, 2, ci.PeerCert.DN)
		})
	}
	return b
}

// AppendSocketCreated appends a SocketCreatedRequest{conn, conninfo}.
func AppendSocketCreated(b []byte, conn string, ci *ConnInfo) []byte {
	b = appendString(b, 1, conn)
	return appendMessage(b, 2, func(b []byte) []byte { return AppendConnInfo(b, ci) })
}

// AppendMessage appends the encoding of m (without a field tag).
func AppendMessage(b []byte, m *Message) []byte {
	b = appendString(b, 1, m.Node)
	b = appendString(b, 2, m.ID)
	b = appendUint(b, 3, uint64(m.QoS))
	b = appendString(b, 4, m.From)
	b = appendString(b, 5, m.Topic)
	b = appendBytes(b, 6, m.Payload)
	return appendUint(b, 7, m.Timestamp)
}

// AppendReceivedMessages appends the conn field of a
// ReceivedMessagesRequest; append each message with AppendMessageField.
func AppendReceivedMessages(b []byte, conn string) []byte {
	return appendString(b, 1, conn)
}

// AppendMessageField appends m as one element of
// ReceivedMessagesRequest.messages.
func AppendMessageField(b []byte, m *Message) []byte {
	return appendMessage(b, 2, func(b []byte) []byte { return AppendMessage(b, m) })
}

// AppendSocketClosed appends a SocketClosedRequest{conn, reason}.
func AppendSocketClosed(b []byte, conn, reason string) []byte {
	b = appendString(b, 1, conn)
	return appendString(b, 2, reason)
}

// AppendAuthenticate appends an AuthenticateRequest{conn, clientinfo,
// password}.
func AppendAuthenticate(b []byte, conn string, ci *ClientInfo, password string) []byte {
	b = appendString(b, 1, conn)
	b = appendMessage(b, 2, func(b []byte) []byte {
		b = appendString(b, 1, ci.ProtoName)
		b = appendString(b, 2, ci.ProtoVer)
		b = appendString(b, 3, ci.ClientID)
		b = appendString(b, 4, ci.Username)
		return appendString(b, 5, ci.Mountpoint)
	})
	return appendString(b, 3, password)
}

func decodeAddress(b []byte, a *Address) error {
	return fields(b, func(num int, typ wireType, v []byte, x uint64) error {
		switch num {
		case 1:
			a.Host = string(v)
			return want(num, typ, wireBytes)
		case 2:
			a.Port = uint32(x)
			return want(num, typ, wireVarint)
		}
		return nil
	})
}

// DecodeConnInfo decodes a ConnInfo.
func DecodeConnInfo(b []byte) (ConnInfo, error) {
	var ci ConnInfo
	err := fields(b, func(num int, typ wireType, v []byte, x uint64) error {
		switch num {
		case 1:
			ci.SockType = int32(x)
			return want(num, typ, wireVarint)
		case 2, 3, 4:
			if err := want(num, typ, wireBytes); err != nil {
				return err
			}
		}
		switch num {
		case 2:
			return decodeAddress(v, &ci.Peer)
		case 3:
			return decodeAddress(v, &ci.Local)
		case 4:
			ci.HasPeerCert = true
			return fields(v, func(num int, typ wireType, v []byte, _ uint64) error {
				switch num {
				case 1:
					ci.PeerCert.CN = string(v)
				case 2:
					ci.PeerCert.DN = string(v)
				default:
					return nil
				}
				return want(num, typ, wireBytes)
			})
		}
		return nil
	})
	return ci, err
}

// DecodeSocketCreated decodes a SocketCreatedRequest.
func DecodeSocketCreated(b []byte) (conn string, ci ConnInfo, err error) {
	err = fields(b, func(num int, typ wireType, v []byte, _ uint64) error {
		switch num {
		case 1:
			conn = string(v)
		case 2:
			var err error
			if ci, err = DecodeConnInfo(v); err != nil {
				return err
			}
		default:
			return nil
		}
		return want(num, typ, wireBytes)
	})
	return conn, ci, err
}

// DecodeMessage decodes one Message. Payload aliases b.
func DecodeMessage(b []byte) (Message, error) {
	var m Message
	err := fields(b, func(num int, typ wireType, v []byte, x uint64) error {
		switch num {
		case 1:
			m.Node = string(v)
		case 2:
			m.ID = string(v)
		case 3:
			m.QoS = uint32(x)
			return want(num, typ, wireVarint)
		case 4:
			m.From = string(v)
		case 5:
			m.Topic = string(v)
		case 6:
			m.Payload = v
		case 7:
			m.Timestamp = x
			return want(num, typ, wireVarint)
		default:
			return nil
		}
		return want(num, typ, wireBytes)
	})
	return m, err
}

// DecodeReceivedMessages decodes a ReceivedMessagesRequest, appending its
// messages to dst. Payloads alias b.
func DecodeReceivedMessages(b []byte, dst []Message) (conn string, msgs []Message, err error) {
	msgs = dst
	err = fields(b, func(num int, typ wireType, v []byte, _ uint64) error {
		switch num {
		case 1:
			conn = string(v)
		case 2:
			if err := want(num, typ, wireBytes); err != nil {
				return err
			}
			m, err := DecodeMessage(v)
			if err != nil {
				return err
			}
			msgs = append(msgs, m)
			return nil
		default:
			return nil
		}
		return want(num, typ, wireBytes)
	})
	return conn, msgs, err
}

// DecodeSocketClosed decodes a SocketClosedRequest.
func DecodeSocketClosed(b []byte) (conn, reason string, err error) {
	err = fields(b, func(num int, typ wireType, v []byte, _ uint64) error {
		switch num {
		case 1:
			conn = string(v)
		case 2:
			reason = string(v)
		default:
			return nil
		}
		return want(num, typ, wireBytes)
	})
	return conn, reason, err
}

// DecodeAuthenticate decodes an AuthenticateRequest. hasClientInfo reports
// whether the clientinfo field was present.
func DecodeAuthenticate(b []byte) (ci ClientInfo, hasClientInfo bool, password string, err error) {
	err = fields(b, func(num int, typ wireType, v []byte, _ uint64) error {
		switch num {
		case 1: // conn: the host uses the call's conn argument
		case 2:
			hasClientInfo = true
			if err := want(num, typ, wireBytes); err != nil {
				return err
			}
			return fields(v, func(num int, typ wireType, v []byte, _ uint64) error {
				switch num {
				case 1:
					ci.ProtoName = string(v)
				case 2:
					ci.ProtoVer = string(v)
				case 3:
					ci.ClientID = string(v)
				case 4:
					ci.Username = string(v)
				case 5:
					ci.Mountpoint = string(v)
				default:
					return nil
				}
				return want(num, typ, wireBytes)
			})
		case 3:
			password = string(v)
		default:
			return nil
		}
		return want(num, typ, wireBytes)
	})
	return ci, hasClientInfo, password, err
}
