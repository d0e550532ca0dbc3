package gateway

// This file holds the pub/sub calls of a connection (Authenticate,
// Publish, Subscribe, Unsubscribe) and its deliveries.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/protogate/protogate/gateway/topic"
)

type subEntry struct {
	qos uint8
	sub Subscription
}

// Authenticate registers ci.ClientID for the connection after the Server's
// Authenticator (if any, and unless the listener disables it) accepts the
// credentials. Another connection holding the same client id is closed with
// ReasonDiscarded. A failed Authenticate leaves the connection open and may be
// retried; a second successful one is refused.
func (c *Conn) Authenticate(ctx context.Context, ci *ClientInfo, password string) (err error) {
	defer c.called(callAuthenticate, "", nil, c.callStart(), &err)
	if ci == nil {
		return Errorf(CodeRequiredParamsMissed, "gateway: clientinfo is missing")
	}
	c.mu.Lock()
	switch {
	case c.state == stateDead:
		c.mu.Unlock()
		return ErrNotAlive
	case c.state != stateOpen:
		c.mu.Unlock()
		return ErrDisconnected
	case c.authed || c.authing:
		c.mu.Unlock()
		return ErrAlreadyAuthenticated
	}
	c.authing = true
	c.mu.Unlock()

	var id *Identity
	a := c.srv.opts.Authenticator
	if c.l.Authenticator != nil {
		a = c.l.Authenticator
	}
	if a != nil && !c.l.DisableAuthn {
		req := &AuthRequest{Client: *ci, Password: password, Peer: c.info.Peer, Listener: c.l.Name, PeerCert: c.info.PeerCert}
		var err error
		if id, err = c.authenticate(ctx, a, req); err == nil && id != nil && !id.ExpireAt.IsZero() && !time.Now().Before(id.ExpireAt) {
			err = Errorf(CodePermissionDeny, "gateway: credentials expired at %s", id.ExpireAt.UTC().Format(time.RFC3339))
		}
		if err != nil {
			c.srv.authnDeny.Add(1)
			c.mu.Lock()
			c.authing = false
			c.mu.Unlock()
			if CodeOf(err) == CodeUnknown {
				err = &Error{Code: CodePermissionDeny, Err: err}
			}
			return err
		}
		c.srv.authnAllow.Add(1)
	}
	release, err := c.claim(ctx, ci.ClientID)
	if err != nil {
		c.mu.Lock()
		c.authing = false
		c.mu.Unlock()
		return err
	}
	mp := topic.ExpandMountpoint(c.l.Mountpoint, ci.ClientID, ci.Username)
	old := c.srv.claimClientID(ci.ClientID, c)
	if old != nil {
		c.srv.log.Info("gateway: client id taken over; discarding older connection",
			"clientid", ci.ClientID, "old", old.handle, "new", c.handle)
		old.Discard()
	}
	c.mu.Lock()
	c.authing = false
	if c.state != stateOpen {
		c.mu.Unlock()
		c.srv.releaseClientID(ci.ClientID, c)
		if release != nil {
			release()
		}
		return ErrDisconnected
	}
	c.release = release
	c.authed = true
	c.clientID = ci.ClientID
	c.username = ci.Username
	c.protoName, c.protoVer = ci.ProtoName, ci.ProtoVer
	c.connectedAt = time.Now()
	c.identity = id
	if id != nil && !id.ExpireAt.IsZero() {
		c.expiry = time.AfterFunc(time.Until(id.ExpireAt), func() { c.closeWith(ReasonExpired) })
	}
	c.mountpoint = mp
	c.mu.Unlock()
	return nil
}

// claim waits out the jail of clientID, if any, and claims it in the
// Server's Registry. The error is the one Authenticate fails with.
func (c *Conn) claim(ctx context.Context, clientID string) (release func(), err error) {
	if err := c.srv.waitJail(ctx, clientID); err != nil {
		return nil, err
	}
	r := c.srv.opts.Registry
	if r == nil {
		return nil, nil
	}
	release, err = r.Claim(ctx, clientID, c)
	if err != nil {
		if CodeOf(err) == CodeUnknown {
			err = &Error{Code: CodeUnknown, Err: err}
		}
		return nil, err
	}
	return release, nil
}

// authenticate runs the Authenticator. A panic in it (a bug of an authn
// back end, possibly triggered by what a device sent) denies this client
// instead of ending the process: the call fails closed.
func (c *Conn) authenticate(ctx context.Context, a Authenticator, req *AuthRequest) (id *Identity, err error) {
	defer func() {
		if r := recover(); r != nil {
			id, err = nil, c.srv.handlerPanicked(c, "authenticate", r)
		}
	}()
	return a.Authenticate(ctx, req)
}

// pubsubState returns the mountpoint and client id for a pub/sub call, or
// the error refusing it.
func (c *Conn) pubsubState() (mountpoint, clientID string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.state == stateDead:
		return "", "", ErrNotAlive
	case c.state != stateOpen:
		return "", "", ErrClosing
	case !c.authed:
		return "", "", ErrNotAuthenticated
	}
	if c.srv.opts.PubSub == nil {
		return "", "", ErrNoPubSub
	}
	return c.mountpoint, c.clientID, nil
}

func checkTopicQoS(t string, qos uint32) error {
	if t == "" {
		return Errorf(CodeRequiredParamsMissed, "gateway: topic is empty")
	}
	if qos > 2 {
		return Errorf(CodeParamsTypeError, "gateway: qos %d is not 0, 1 or 2", qos)
	}
	return nil
}

// Publish publishes payload on the mounted topic, From the connection's
// client id. The connection must be authenticated. Like all subscribers, the
// connection itself receives the message if it is subscribed.
func (c *Conn) Publish(t string, qos uint32, payload []byte) (err error) {
	defer c.called(callPublish, t, payload, c.callStart(), &err)
	if err := checkTopicQoS(t, qos); err != nil {
		return err
	}
	mp, clientID, err := c.pubsubState()
	if err != nil {
		return err
	}
	if err := c.authorize(c.srv.ctx, ActionPublish, t, uint8(qos)); err != nil {
		return err
	}
	c.published.Store(true)
	err = c.srv.opts.PubSub.Publish(&Message{
		QoS:     uint8(qos),
		From:    clientID,
		Topic:   topic.Mount(mp, t),
		Payload: payload,
	})
	if err == nil {
		c.recvMsg.Add(1)
		c.ls.recvMsg.Add(1)
	}
	return err
}

// Subscribe subscribes the connection to the mounted filter. Subscribing
// again to the same filter updates its QoS. Deliveries arrive as
// OnReceivedMessages with the mountpoint stripped from their topics. A new
// filter beyond the listener's MaxSubscriptions is refused with
// ErrTooManySubscriptions; the connection keeps the ones it has.
func (c *Conn) Subscribe(ctx context.Context, filter string, qos uint32) (err error) {
	defer c.called(callSubscribe, filter, nil, c.callStart(), &err)
	if err := checkTopicQoS(filter, qos); err != nil {
		return err
	}
	mp, _, err := c.pubsubState()
	if err != nil {
		return err
	}
	if err := c.authorize(ctx, ActionSubscribe, filter, uint8(qos)); err != nil {
		return err
	}
	c.subMu.Lock()
	defer c.subMu.Unlock()
	if e, ok := c.subs[filter]; ok {
		e.qos = uint8(qos)
		return nil
	}
	if max := c.l.MaxSubscriptions; max > 0 && len(c.subs) >= max {
		return fmt.Errorf("%w: %q would be one more than the listener's max_subscriptions (%d)", ErrTooManySubscriptions, filter, max)
	}
	sub, err := c.srv.opts.PubSub.Subscribe(ctx, mountFilter(mp, filter), c)
	if err != nil {
		return err
	}
	c.mu.Lock()
	open := c.state == stateOpen
	c.mu.Unlock()
	if !open {
		// Lost a race with close: terminate may already have run
		// unsubscribeAll, so undo here.
		sub.Unsubscribe()
		return ErrClosing
	}
	if c.subs == nil {
		c.subs = make(map[string]*subEntry)
	}
	c.subs[filter] = &subEntry{qos: uint8(qos), sub: sub}
	return nil
}

// Unsubscribe removes a subscription. Removing a filter the connection is not
// subscribed to succeeds.
func (c *Conn) Unsubscribe(filter string) (err error) {
	defer c.called(callUnsubscribe, filter, nil, c.callStart(), &err)
	if filter == "" {
		return Errorf(CodeRequiredParamsMissed, "gateway: topic is empty")
	}
	if _, _, err := c.pubsubState(); err != nil {
		return err
	}
	c.subMu.Lock()
	e, ok := c.subs[filter]
	delete(c.subs, filter)
	c.subMu.Unlock()
	if ok {
		return e.sub.Unsubscribe()
	}
	return nil
}

func (c *Conn) unsubscribeAll() {
	c.subMu.Lock()
	subs := c.subs
	c.subs = nil
	c.subMu.Unlock()
	for _, e := range subs {
		e.sub.Unsubscribe()
	}
}

// mountFilter applies the mountpoint to a filter, inside a $share/group/
// prefix when there is one.
func mountFilter(mp, filter string) string {
	if mp == "" {
		return filter
	}
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		if group, f, ok := strings.Cut(rest, "/"); ok {
			return "$share/" + group + "/" + mp + f
		}
	}
	return mp + filter
}

// Deliver queues m for the handler. While the connection has
// MaxPendingMessages queued, Deliver waits for its handler to take some: a
// subscriber that keeps up loses nothing, however busy its handler, and
// its deliveries slow the publishers down instead (see Pacer). A
// subscriber whose device does not read (a write to its socket has waited
// MaxDeliveryWait) is slow: it loses what exceeds its bound, counted in
// Server.Dropped, without making deliveries wait, until it takes a batch
// that shows it caught up (less than half the bound). So is, as a
// backstop, a subscriber whose handler has taken nothing for ten times
// MaxDeliveryWait (a handler stuck in a callback until its deadline):
// deliveries, and through them every publisher, wait that long at most.
func (c *Conn) Deliver(m *Message) {
	c.mu.Lock()
	max, patience := c.srv.opts.MaxPendingMessages, c.srv.opts.MaxDeliveryWait
	for c.pending >= max {
		if c.state != stateOpen {
			c.mu.Unlock()
			return
		}
		now := time.Since(c.start)
		why := ""
		wait := c.takenAt + stuckFactor*patience - now
		if wait <= 0 {
			why = "its handler has taken nothing"
		}
		if ws := time.Duration(c.writeStart.Load()); ws != 0 {
			if w := ws + patience - now; w <= 0 {
				why = "it is not reading"
			} else {
				wait = min(wait, w)
			}
		}
		wait = min(wait, patience) // and look at the socket again
		if c.slow || why != "" {
			if !c.slow {
				c.slow = true
				c.srv.log.Info("gateway: subscriber is slow; dropping its deliveries beyond its bound",
					"conn", c.handle, "listener", c.l.Name, "why", why, "max_pending_messages", max)
			}
			c.mu.Unlock()
			c.srv.dropped.Add(1)
			c.dropped.Add(1)
			return
		}
		if c.space == nil {
			c.space = make(chan struct{})
		}
		space, wake := c.space, c.wakeLocked()
		c.mu.Unlock()
		// Woken by a take, by the close, or to look at the socket again.
		t := time.NewTimer(wait)
		select {
		case <-space:
		case <-wake:
		case <-t.C:
		case <-c.srv.stopCtx.Done():
			t.Stop()
			return
		}
		t.Stop()
		c.mu.Lock()
	}
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	if c.mountpoint != "" {
		t, ok := topic.Unmount(c.mountpoint, m.Topic)
		if ok {
			cp := *m
			cp.Topic = t
			m = &cp
		}
	}
	if c.pending == 0 {
		// The backlog starts now, however long ago the last take was.
		c.takenAt = time.Since(c.start)
	}
	c.pending++
	// Deliveries that queue up while the handler is busy go out as one
	// OnReceivedMessages batch.
	if n := len(c.queue); n > 0 && c.queue[n-1].kind == evMessages {
		c.queue[n-1].msgs = append(c.queue[n-1].msgs, m)
		c.mu.Unlock()
		return
	}
	msgs := append(c.spareMsgs, m)
	c.spareMsgs = nil
	c.enqueueAsyncLocked(event{kind: evMessages, msgs: msgs})
	c.mu.Unlock()
}

// stuckFactor times MaxDeliveryWait without a take makes a subscriber slow
// even though its device reads (see Deliver).
const stuckFactor = 10

// tookLocked records that the handler took n queued messages. c.mu is held.
func (c *Conn) tookLocked(n int) {
	if c.slow && n < c.srv.opts.MaxPendingMessages/2 {
		c.slow = false
	}
	c.pending -= n
	c.takenAt = time.Since(c.start)
	if c.space != nil {
		close(c.space)
		c.space = nil
	}
}
