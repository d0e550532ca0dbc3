package wasmhost

import "github.com/protogate/protogate/gateway"

// InstanceOf returns the id of the instance c is pinned to, 0 for the
// fallback or none.
func InstanceOf(c *gateway.Conn) int {
	if in, ok := c.HandlerState().(*instance); ok {
		return in.id
	}
	return 0
}
