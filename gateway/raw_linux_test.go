//go:build linux

package gateway

import "testing"

// setNoINQ makes raw readers do without TCP_INQ until t ends.
func setNoINQ(t *testing.T) {
	noINQ = true
	t.Cleanup(func() { noINQ = false })
}
