//go:build wasip1

package main

// main does nothing: the gateway calls the handler's exports.
func main() {}
