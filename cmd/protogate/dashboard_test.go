package main

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/protogate/protogate/internal/browser"
	jp "github.com/protogate/protogate/internal/jsonproto"
)

// TestDashboard opens the admin dashboard in headless Chromium against a
// started gateway with real devices connected, and operates it as a person
// would: the overview, a client search, the client's detail, a trace and a
// kick. admin's TestDashboardRendersOverview checks the page against a fake
// of the API; this test checks it against the real one.
func TestDashboard(t *testing.T) {
	const key, secret = "ops", "s3cret"
	cfg := mustParse(t, `
node: {data_dir: `+sharedDataDir+`}
gateway: {idle_timeout: 0s} # the devices wait between steps, however slow the machine
admin:
  bind: "127.0.0.1:0"
  api_keys: [{key: `+key+`, secret: `+secret+`}]
handlers:
  json: {wasm: {path: "builtin:exproto-json", instances: 1, call_timeout: 5s}}
  echo: {wasm: {path: "builtin:echo", instances: 1, call_timeout: 5s}}
listeners:
  - {name: devices, type: tcp, bind: "127.0.0.1:0", handler: json, mountpoint: "dev/${clientid}/", max_connections: 100}
  - {name: raw, type: tcp, bind: "127.0.0.1:0", handler: echo, max_connections: 10}
`)
	r := startRun(t, cfg)
	api := e2eAPI(t, r, key, secret)

	// dev authenticates and subscribes; anon (on the echo listener) never
	// authenticates.
	dev := dialE2E(t, r.listeners["devices"].String())
	dev.connect(t, "dash-1")
	dev.subscribe(t, "cmd/#")
	anon := dialLines(t, r.listeners["raw"].String())
	if got := anon.cmd("hello"); got != "hello" {
		t.Fatalf("echo: %q", got)
	}
	var devConn, anonConn string
	e2eEventually(t, "the API lists both devices", func(ctx context.Context) error {
		page, _, err := api.Clients(ctx, clientQuery{})
		if err != nil {
			return err
		}
		devConn, anonConn = "", ""
		for _, c := range page.Data {
			switch {
			case c.ClientID == "dash-1":
				devConn = c.Conn
			case c.Listener == "raw":
				anonConn = c.Conn
			}
		}
		if devConn == "" || anonConn == "" || len(page.Data) != 2 {
			return fmt.Errorf("clients %+v", page.Data)
		}
		return nil
	})

	s := browser.New(t) // skips without a browser; closed before the gateway stops

	tid := func(id string) string { return fmt.Sprintf(`[data-testid=%q]`, id) }
	// step runs actions with a deadline of its own, so that a failure names
	// the step.
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(s.Ctx, wait)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v\nconsole: %q", what, err, s.ConsoleErrors())
		}
	}
	eval := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(s.Ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	// textOf is a JavaScript expression: the text of the element sel, or
	// "(none)".
	textOf := func(sel string) string {
		return fmt.Sprintf(`(document.querySelector(%q)?.textContent ?? '(none)')`, sel)
	}
	// waitText waits until the element sel has the text want; the page
	// polls the overview every 2 s.
	waitText := func(sel, want string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(s.Ctx, wait)
		defer cancel()
		js := fmt.Sprintf(`%s === %q`, textOf(sel), want)
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
			t.Fatalf("%s: text %q, want %q (%v)", sel, eval(textOf(sel)), want, err)
		}
	}

	// The page, opened with the API key in its URL: the browser answers the
	// 401 with it, then sends it with the page's fetches too (app.js takes
	// it out of their URLs, which fetch would refuse).
	u := url.URL{Scheme: "http", User: url.UserPassword(key, secret), Host: r.admin.String(), Path: "/"}
	step("load", chromedp.Navigate(u.String()), chromedp.WaitVisible(chromedp.CSS(tid("listener-devices"))))
	waitText(tid("ready"), "READY")
	waitText(tid("listener-devices")+" "+tid("conns"), "1 / 100")
	waitText(tid("listener-raw")+" "+tid("conns"), "1 / 10")
	waitText(tid("listener-devices")+" "+tid("handler"), "json")
	waitText(tid("handler-json")+" "+tid("backend"), "wasm")

	// The first client list has both; a search by client id narrows it.
	step("client list", chromedp.WaitVisible(chromedp.CSS(tid("client-row-"+anonConn))))
	waitText(tid("client-row-"+anonConn)+" "+tid("client"), "(not authenticated) "+anonConn)
	row := tid("client-row-" + devConn)
	step("search",
		chromedp.SendKeys(chromedp.CSS(tid("client-search-text")), "dash-1"),
		chromedp.Click(chromedp.CSS(tid("client-search-submit"))),
		chromedp.WaitNotPresent(chromedp.CSS(tid("client-row-"+anonConn))),
		chromedp.WaitVisible(chromedp.CSS(row)),
	)
	waitText(row+" "+tid("client"), "dash-1 "+devConn)
	waitText(row+" "+tid("listener"), "devices")
	waitText(row+" "+tid("state"), "connected")

	// The detail panel shows its subscription, mountpoint applied.
	step("detail", chromedp.Click(chromedp.CSS(row+" "+tid("listener"))),
		chromedp.WaitVisible(chromedp.CSS(tid("subscription-dev/dash-1/cmd/#"))))
	waitText(tid("field-clientid"), "dash-1")
	waitText(tid("field-mountpoint"), "dev/dash-1/")

	// A trace started from the page shows what the device's frame does, in
	// order: the callback, the handler's calls, the callback's return.
	step("trace", chromedp.Click(chromedp.CSS(tid("trace-start"))))
	waitText(tid("trace-state"), "streaming")
	pub := jp.Frame{Type: jp.Publish, Topic: "up", Payload: "hi"}
	frame := jp.AppendLine(nil, pub)
	dev.send(t, pub)
	dev.expect(t, jp.Puback)
	traceLines := `[...document.querySelectorAll('[data-testid="trace-line"]')].map((e) => [...e.children].map((c) => c.textContent).join('|'))`
	ctx, cancel := context.WithTimeout(s.Ctx, wait)
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](traceLines+`.some((l) => l.includes('|return|on_received_bytes|'))`,
		chromedp.WithPollingInterval(20*time.Millisecond)))
	cancel()
	lines, lerr := chromedp.Run(s.Ctx, chromedp.Evaluate[[]string](traceLines))
	if err != nil || lerr != nil {
		t.Fatalf("trace lines: %v, %v\n%s", err, lerr, strings.Join(lines, "\n"))
	}
	t.Logf("trace:\n%s", strings.Join(lines, "\n"))
	// time|kind|name|size|code|µs|payload / topic / error
	var got []string
	for _, l := range lines {
		f := strings.Split(l, "|")
		got = append(got, strings.Join([]string{f[1], f[2], f[3], f[4]}, " "))
	}
	want := []string{
		fmt.Sprintf("callback on_received_bytes %d SUCCESS", len(frame)),
		"call publish 2 SUCCESS",
		fmt.Sprintf("call send %d SUCCESS", len(jp.AppendLine(nil, jp.Frame{Type: jp.Puback}))),
		"return on_received_bytes 0 SUCCESS",
	}
	if !slices.Equal(got, want) {
		t.Errorf("trace:\n%q\nwant\n%q", got, want)
	}
	// The page asks for the first 32 bytes of each payload, in hex.
	if len(lines) == len(want) {
		if d := strings.Split(lines[0], "|")[6]; d != hexSpaced(frame[:32]) {
			t.Errorf("callback payload %q, want %q", d, hexSpaced(frame[:32]))
		}
		if d := strings.Split(lines[1], "|")[6]; d != "topic up · "+hexSpaced([]byte("hi")) {
			t.Errorf("publish detail %q", d)
		}
	}
	s.Screenshot(t, "dashboard-e2e")

	// Kick: the page asks, the device's socket closes, the API no longer
	// lists it, the trace ends, and the page drops its row and detail; the
	// other device is still served.
	step("kick", chromedp.Click(chromedp.CSS(tid("kick-"+devConn))))
	dev.closed(t)
	e2eEventually(t, "the API forgets the kicked client", func(ctx context.Context) error {
		page, _, err := api.Clients(ctx, clientQuery{})
		if err != nil {
			return err
		}
		if len(page.Data) != 1 || page.Data[0].Conn != anonConn {
			return fmt.Errorf("clients %+v", page.Data)
		}
		return nil
	})
	waitText(tid("trace-state"), "ended: the connection closed")
	step("row gone", chromedp.WaitNotPresent(chromedp.CSS(row)), chromedp.WaitNotVisible(chromedp.CSS(tid("client-detail"))))
	if d := s.Dialogs(); len(d) != 1 || !strings.HasPrefix(d[0], "Kick dash-1 ("+devConn) {
		t.Errorf("dialogs: %q", d)
	}
	if got := anon.cmd("still here"); got != "still here" {
		t.Errorf("the other device after the kick: %q", got)
	}

	if errs := s.ConsoleErrors(); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
	if reqs := s.ForeignRequests(); len(reqs) > 0 {
		t.Errorf("requests to other origins: %q", reqs)
	}
}

// hexSpaced is b in hex as the dashboard shows a payload: "7b 22 74".
func hexSpaced(b []byte) string {
	var parts []string
	for _, c := range b {
		parts = append(parts, fmt.Sprintf("%02x", c))
	}
	return strings.Join(parts, " ")
}
