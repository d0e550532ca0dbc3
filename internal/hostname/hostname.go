// Package hostname checks DNS host names in addresses the gateway is
// configured with (handler addresses, bind addresses), so that the
// validator and the runtime judge them alike.
package hostname

import "strings"

// Valid reports whether h is a plausible DNS host name: at most 253
// characters in labels of 1 to 63 letters, digits, '-' and '_', none
// starting or ending with '-', with an optional trailing dot.
func Valid(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
