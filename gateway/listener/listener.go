// Package listener provides the datagram listeners of protogate: a UDP
// listener that turns each peer ip:port into a pseudo-connection (a
// net.Conn), and a DTLS handshaker, on pion/dtls/v2, that secures those
// pseudo-connections for the gateway core (gateway.Handshaker).
//
// # UDP
//
// ListenUDP opens one socket and one read loop, which starts when the
// admission function is set (SetAdmit) or at the first Accept, so that
// admission applies to every peer. The first datagram of a peer the
// listener does not know creates a pseudo-connection, which Accept
// returns; every later datagram of that peer is queued for it, and one Read
// returns one datagram. The read loop never waits for a reader: when a
// peer's queue is full, the datagram is dropped and counted (UDPStats), so a
// slow peer cannot stall the others. Closing a pseudo-connection forgets the
// peer: its next datagram creates a new pseudo-connection, as ExProto's
// esockd_udp does (a new conn, a new OnSocketCreated).
//
// # DTLS
//
// A DTLS handshake runs on a pseudo-connection of a UDPListener, in the
// goroutine that calls DTLS.Handshake: the core calls it from each
// connection's own goroutine, so handshakes run concurrently and one slow
// or failing client delays no other. (pion/dtls/v2's own Listener runs each
// handshake inside Accept, one at a time; see pion/dtls issues 279 and 618.
// This package does not use it.)
package listener
