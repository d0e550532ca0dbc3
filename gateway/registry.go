package gateway

// This file holds what keeps a client id on one connection: the Server's
// own map (clientsMu, clients) for the connections of this process, the
// ClientRegistry for those of other nodes, and the jail that slows down two
// devices fighting over one id.

import (
	"context"
	"fmt"
	"time"
)

// ClientRegistry keeps each client id on one connection across the nodes
// of a cluster; the Server keeps it on one connection of its own (its
// Options.Registry is nil on a single node). Implementations are in package
// gateway/registry. They must be safe for concurrent use.
type ClientRegistry interface {
	// Claim makes the node of c the owner of clientID. It is called from
	// Authenticate once the credentials are accepted and before the
	// handler hears SUCCESS. A connection that holds clientID on another
	// node is discarded (Claimant.Discard) and, unless ctx ends first, has
	// finished when Claim returns. Should another node claim the id later,
	// the registry discards c. release ends the claim when c closes; it
	// never removes a newer owner's claim.
	//
	// An error refuses the Authenticate with it; an implementation
	// decides what to do when the cluster cannot answer in time (its
	// on_unavailable policy) and says so in the error.
	Claim(ctx context.Context, clientID string, c Claimant) (release func(), err error)
}

// ClientKicker is implemented by a ClientRegistry that can close a client
// connected to another node, as the admin API's kick does on this one.
type ClientKicker interface {
	// Kick closes the connection holding clientID, wherever it is, with
	// ReasonKicked, and waits (bounded by ctx) until it has finished. It
	// reports whether some node held clientID.
	Kick(ctx context.Context, clientID string) (bool, error)
}

// Claimant is the connection a ClientRegistry claim is for. *Conn
// implements it.
type Claimant interface {
	// Handle identifies the connection on its node.
	Handle() string
	// Discard closes the connection with ReasonDiscarded: another
	// connection took its client id.
	Discard()
	// Kick closes the connection with ReasonKicked.
	Kick()
	// Finished is closed once the handler has seen OnSocketClosed.
	Finished() <-chan struct{}
}

var _ Claimant = (*Conn)(nil)

// JailTime is how long a client id that was just taken over stays jailed:
// a new Authenticate for it waits until then (or fails, when its deadline
// comes first). Two devices that share an id, each reconnecting as soon as
// the other takes it, then trade it once a second instead of as fast as
// the network allows. nats-server holds its MQTT clients for the same time.
const JailTime = time.Second

// Discard closes the connection with ReasonDiscarded, as a takeover of its
// client id does, and jails the id (see JailTime).
func (c *Conn) Discard() {
	c.mu.Lock()
	id, authed := c.clientID, c.authed
	c.mu.Unlock()
	if authed {
		c.srv.jail(id)
	}
	c.closeWith(ReasonDiscarded)
}

// jail starts id's JailTime.
func (s *Server) jail(id string) {
	now := time.Now()
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	if s.jailed == nil {
		s.jailed = make(map[string]time.Time)
	}
	// Sweep the ids whose time is over once the map has grown, so that it
	// holds at most about a second's worth of takeovers.
	if len(s.jailed) >= 64 && now.Sub(s.jailSwept) >= JailTime {
		for k, until := range s.jailed {
			if !now.Before(until) {
				delete(s.jailed, k)
			}
		}
		s.jailSwept = now
	}
	s.jailed[id] = now.Add(JailTime)
}

// waitJail waits until id is out of jail. When ctx would end first it
// fails at once, rather than holding a caller (a Wasm guest's callback has
// a short deadline) for nothing.
func (s *Server) waitJail(ctx context.Context, id string) error {
	s.clientsMu.Lock()
	until, ok := s.jailed[id]
	s.clientsMu.Unlock()
	if !ok {
		return nil
	}
	wait := time.Until(until)
	if wait <= 0 {
		return nil
	}
	s.jailHits.Add(1)
	if s.jailLog.allow(time.Now()) {
		s.log.Info("gateway: client id taken over less than a second ago; holding the newcomer (logged once a second)",
			"clientid", id, "wait", wait.Round(time.Millisecond))
	}
	if d, ok := ctx.Deadline(); ok && d.Before(until) {
		return Errorf(CodePermissionDeny, "gateway: client id %q was taken over less than %s ago; retry in %s",
			id, JailTime, wait.Round(time.Millisecond))
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("gateway: waiting out the client id's jail: %w", ctx.Err())
	}
}

// Jailed returns how many Authenticate calls were held back (or refused)
// because their client id had just been taken over.
func (s *Server) Jailed() uint64 { return s.jailHits.Load() }
