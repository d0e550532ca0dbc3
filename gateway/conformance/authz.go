package conformance

import (
	"testing"
	"time"

	"github.com/protogate/protogate/gateway"
	"github.com/protogate/protogate/gateway/authz"
	jp "github.com/protogate/protogate/internal/jsonproto"
)

// okOnly allows publishing and subscribing under ok/ (and under
// own/${clientid}/) only; nothing else matches, and no match denies.
func okOnly() gateway.Authorizer {
	ok, _ := authz.ParseTopic("ok/#")
	own, _ := authz.ParseTopic("own/${clientid}/#")
	return &authz.Chain{Sources: []authz.Source{authz.Rules{{Allow: true, Action: authz.All, Topics: []authz.Topic{ok, own}}}}}
}

// testAuthzDenied: a publish or subscribe outside the client's ACL answers
// PERMISSION_DENY to the handler, and nothing reaches subscribers. Topics
// are authorized as the device names them, before the mountpoint.
func testAuthzDenied(t *testing.T, env *Env) {
	denied := env.natsSub(t, "m.nope.>")
	allowed := env.natsSub(t, "m.ok.>")
	before := env.Server.Calls()
	c := env.dial(t)
	c.connect("authz-1", 0, 0)
	c.publish("nope/x", 0, "must not pass", 1)
	c.subscribe("nope/#", 0, 1)
	c.publish("own/authz-1/up", 0, "mine", 0)
	c.publish("own/other/up", 0, "theirs", 1)
	c.subscribe("ok/#", 0, 0)
	c.publish("ok/sentinel", 0, "after", 0)
	// The device's own subscription delivers the allowed message back.
	if f := c.expect(jp.Publish, 0); f.Topic != "ok/sentinel" {
		t.Errorf("delivery %+v", f)
	}
	if m := recvNATS(t, allowed); string(m.Data) != "after" {
		t.Errorf("allowed message %q", m.Data)
	}
	// The sentinel was published after the denied message: had that one
	// gone out, it would be here by now.
	select {
	case m := <-denied:
		t.Errorf("denied publish reached a subscriber: %q on %s", m.Data, m.Subject)
	case <-time.After(0):
	}
	after := env.Server.Calls()
	var deny [2]uint64
	for i, call := range gateway.CallNames {
		for j, code := range gateway.Codes() {
			if code != gateway.CodePermissionDeny {
				continue
			}
			switch call {
			case "publish":
				deny[0] += after[i][j] - before[i][j]
			case "subscribe":
				deny[1] += after[i][j] - before[i][j]
			}
		}
	}
	if deny != [2]uint64{2, 1} {
		t.Errorf("PERMISSION_DENY answers (publish, subscribe) = %v, want [2 1]", deny)
	}
	if st := env.Server.AuthStats(); st.Deny["publish"] < 2 || st.Deny["subscribe"] < 1 {
		t.Errorf("auth stats %+v", st)
	}
}
