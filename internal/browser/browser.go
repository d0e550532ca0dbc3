// Package browser runs a headless Chromium for the tests of the admin
// dashboard: admin's, against a fake of the API, and cmd/protogate's,
// against a running gateway. Only tests import it.
//
// [New] starts a browser with one tab for one test and stops it when the test
// ends. The [Session] it returns records what a test of a page wants to fail
// on: console errors, uncaught exceptions and requests to other origins. It
// accepts every JavaScript dialog (alert, confirm, prompt) so that a page that
// asks "Kick dev1?" does not block, and records their messages.
//
// The test is skipped when no browser is installed; scripts/deps.sh installs
// the Debian package chromium-headless-shell.
package browser

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Timeout bounds the life of a [Session]: the browser is stopped this long
// after [New] at the latest, or earlier when the test's own deadline comes
// first.
const Timeout = 60 * time.Second

// names are the browser programs Find looks for, best first.
var names = []string{"chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"}

// Find returns the path of a Chromium or Chrome that can run headless: one of
// chromium-headless-shell, chromium, chromium-browser and google-chrome on
// PATH, or else in /usr/lib/chromium*. ok is false when there is none.
func Find() (path string, ok bool) {
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/chromium*")
	for _, name := range names {
		for _, dir := range dirs {
			p := filepath.Join(dir, name)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p, true
			}
		}
	}
	return "", false
}

// Session is one browser tab, open for the life of one test.
//
// Ctx is the chromedp context of the tab: pass it (or a context derived from
// it, for example with a shorter timeout) to chromedp.Do and chromedp.Run. Ctx
// ends after [Timeout] or when the test ends.
//
// The methods are safe for concurrent use; Ctx follows the rules of chromedp
// (one action at a time on one tab).
type Session struct {
	Ctx context.Context

	mu      sync.Mutex
	console []string // console.error calls, exceptions, browser log errors
	foreign []string // requests to an origin other than their document's
	dialogs []string // messages of the dialogs accepted
	done    bool     // the test's cleanup ran: t.Logf would panic
}

// logf returns a printf for chromedp's log, which stops when the test ends.
func (s *Session) logf(t testing.TB) func(string, ...any) {
	return func(format string, args ...any) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.done {
			t.Logf("browser: "+format, args...)
		}
	}
}

// New starts a headless browser with one tab and returns its [Session]. It
// skips the test when [Find] finds no browser, and fails it when the browser
// does not start. The browser runs without a sandbox (CI runs as root) and is
// stopped, with every process it started, when the test ends.
func New(t testing.TB) *Session {
	t.Helper()
	path, ok := Find()
	if !ok {
		t.Skip("no headless chromium: install chromium-headless-shell (scripts/deps.sh)")
	}

	deadline := time.Now().Add(Timeout)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if td, ok := d.Deadline(); ok && td.Before(deadline) {
			deadline = td.Add(-time.Second) // leave time to report
		}
	}
	parent, cancelTimeout := context.WithDeadline(context.Background(), deadline)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(parent, opts...)

	s := &Session{}
	ctx, cancelTab := chromedp.NewContext(allocCtx,
		chromedp.WithListener(s.record),
		chromedp.WithLogf(s.logf(t)),
	)
	s.Ctx = ctx

	var wg sync.WaitGroup
	t.Cleanup(func() {
		defer func() {
			s.mu.Lock()
			s.done = true
			s.mu.Unlock()
		}()
		// Closes the tab and the browser, waits for its process and removes
		// its profile directory; then the dialog goroutine ends with ctx.
		if err := chromedp.Cancel(ctx); err != nil && parent.Err() == nil {
			t.Logf("browser: closing: %v", err)
		}
		cancelTab()
		cancelAlloc()
		cancelTimeout()
		wg.Wait()
	})

	// Start the browser and the tab now, so that a browser that cannot
	// start fails here with a clear message, and so that derived contexts
	// with their own timeouts do not bind the browser's life.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("browser: starting %s: %v", path, err)
	}

	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	wg.Go(func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			s.mu.Lock()
			s.dialogs = append(s.dialogs, ev.Message)
			s.mu.Unlock()
			_, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			if err != nil && ctx.Err() == nil {
				t.Logf("browser: accepting dialog %q: %v", ev.Message, err)
			}
		}
	})

	t.Logf("browser: %s", path)
	return s
}

// record is the tab's event listener. It runs on the goroutine that reads
// the browser's messages, in their order, before a command that follows an
// event returns: so an error the page logged before an action completed is
// recorded when the action returns.
func (s *Session) record(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		args := make([]string, 0, len(ev.Args))
		for _, a := range ev.Args {
			args = append(args, remoteText(a))
		}
		msg = "console." + string(ev.Type) + ": " + strings.Join(args, " ")
	case *runtime.EventExceptionThrown:
		msg = "exception: " + exceptionText(ev.ExceptionDetails)
	case *cdplog.EventEntryAdded:
		// The browser's own errors: a Content-Security-Policy violation, a
		// script that failed to load. An HTTP error status of a fetch is the
		// page's business (it shows it), so network entries are left out.
		e := ev.Entry
		if e == nil || e.Level != cdplog.EntryLevelError || e.Source == cdplog.EntrySourceNetwork {
			return
		}
		msg = fmt.Sprintf("log (%s): %s", e.Source, e.Text)
		if e.URL != "" {
			msg += " [" + e.URL + "]"
		}
	case *network.EventRequestWillBeSent:
		if ev.Request == nil || !foreign(ev.Request.URL, ev.DocumentURL) {
			return
		}
		s.mu.Lock()
		s.foreign = append(s.foreign, ev.Request.Method+" "+ev.Request.URL)
		s.mu.Unlock()
		return
	default:
		return
	}
	s.mu.Lock()
	s.console = append(s.console, msg)
	s.mu.Unlock()
}

// foreign reports whether a request to u, made by the document at doc, goes
// to another origin. data: and blob: URLs are not requests to anyone.
func foreign(u, doc string) bool {
	ru, err := url.Parse(u)
	if err != nil {
		return true
	}
	switch ru.Scheme {
	case "data", "blob", "about":
		return false
	}
	du, err := url.Parse(doc)
	if err != nil {
		return true
	}
	return ru.Scheme != du.Scheme || ru.Host != du.Host
}

func remoteText(o *runtime.RemoteObject) string {
	switch {
	case o == nil:
		return ""
	case o.Description != "":
		return o.Description
	case o.UnserializableValue != "":
		return string(o.UnserializableValue)
	case len(o.Value) > 0:
		return strings.Trim(string(o.Value), `"`)
	}
	return string(o.Type)
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d == nil {
		return "(no details)"
	}
	if d.Exception != nil && d.Exception.Description != "" {
		return d.Text + " " + d.Exception.Description // has the stack
	}
	return fmt.Sprintf("%s at %s:%d:%d", d.Text, d.URL, d.LineNumber+1, d.ColumnNumber+1)
}

// ConsoleErrors returns what the page reported as errors so far: calls of
// console.error and console.assert, uncaught exceptions and unhandled promise
// rejections, and the browser's own error log entries, such as a
// Content-Security-Policy violation. HTTP error statuses are not included.
func (s *Session) ConsoleErrors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.console...)
}

// ForeignRequests returns the requests so far ("METHOD URL") whose origin
// differs from the origin of the document that made them.
func (s *Session) ForeignRequests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.foreign...)
}

// Dialogs returns the messages of the JavaScript dialogs the session
// accepted so far, in order.
func (s *Session) Dialogs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.dialogs...)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Screenshot writes a PNG of the whole page to <dir>/<name>.png, where dir is
// $PROTOGATE_ARTIFACTS when set and <os.TempDir()>/protogate-screenshots
// otherwise, logs the path and returns it. It scrolls the page to the top
// first, so that sticky and fixed elements are drawn where a reader expects
// them. It fails the test when the capture fails.
func (s *Session) Screenshot(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("PROTOGATE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "protogate-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("browser: screenshot: %v", err)
	}
	if err := chromedp.Do(s.Ctx, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`)); err != nil {
		t.Fatalf("browser: screenshot %s: %v", name, err)
	}
	buf, err := chromedp.Run(s.Ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("browser: screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, unsafeName.ReplaceAllString(name, "_")+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatalf("browser: screenshot: %v", err)
	}
	t.Logf("browser: screenshot %s", path)
	return path
}
