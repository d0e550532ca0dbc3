package main

import (
	"context"
	"strings"
	"testing"
)

// TestLangsMissingGuest: without .bin/guests the langs group fails before
// starting anything, and says how to build the guests.
func TestLangsMissingGuest(t *testing.T) {
	s := &suite{opts: options{bin: t.TempDir(), out: t.TempDir()}, tmp: t.TempDir()}
	err := s.langCases(context.Background())
	if err == nil || !strings.Contains(err.Error(), "echo-c.wasm") || !strings.Contains(err.Error(), "run make sdk-guests") {
		t.Fatalf("langCases without guests: %v", err)
	}
}

func TestWasmHandler(t *testing.T) {
	if got, want := wasmHandler("/g/echo-c.wasm", 9), "handlers:\n  echo:\n    wasm:\n      path: /g/echo-c.wasm\n      instances: 9\n"; got != want {
		t.Errorf("wasmHandler(9) = %q, want %q", got, want)
	}
	if got := wasmHandler("builtin:echo", 0); strings.Contains(got, "instances") {
		t.Errorf("wasmHandler(0) = %q: want the default instances", got)
	}
}
