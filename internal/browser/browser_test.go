package browser

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestSessionRecords proves that a Session sees what a dashboard test fails
// on: a Content-Security-Policy violation, console.error, an uncaught
// exception, a request to another origin; and that it accepts a confirm().
func TestSessionRecords(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer other.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src *")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>t</title>
<script>window.inlineRan = true</script>
<img src="%s/pixel">
<p id="answer"></p>
<script src="page.js"></script>`, other.URL)
	})
	mux.HandleFunc("GET /page.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprint(w, `console.error("boom", 42);
console.log("not an error");
document.getElementById("answer").textContent = confirm("sure?") ? "yes" : "no";
setTimeout(() => { throw new Error("thrown") }, 0);`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	s := New(t)
	ctx, cancel := context.WithTimeout(s.Ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#answer")),
	); err != nil {
		t.Fatal(err)
	}
	answer, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#answer")))
	if err != nil || answer != "yes" {
		t.Errorf("answer = %q, %v; want yes (the confirm accepted)", answer, err)
	}
	if got := s.Dialogs(); !slices.Equal(got, []string{"sure?"}) {
		t.Errorf("Dialogs() = %q", got)
	}
	// The exception is thrown on a later task: wait for it with a deadline.
	for !slices.ContainsFunc(s.ConsoleErrors(), func(m string) bool { return strings.Contains(m, "thrown") }) {
		if ctx.Err() != nil {
			t.Fatalf("no exception in %q", s.ConsoleErrors())
		}
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`0`)); err != nil {
			t.Fatal(err)
		}
	}
	errs := strings.Join(s.ConsoleErrors(), "\n")
	for _, want := range []string{"console.error: boom 42", "Content Security Policy", "Error: thrown"} {
		if !strings.Contains(errs, want) {
			t.Errorf("ConsoleErrors() has no %q:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, "not an error") {
		t.Errorf("ConsoleErrors() has a console.log:\n%s", errs)
	}
	if got := s.ForeignRequests(); !slices.Equal(got, []string{"GET " + other.URL + "/pixel"}) {
		t.Errorf("ForeignRequests() = %q", got)
	}
	t.Setenv("PROTOGATE_ARTIFACTS", t.TempDir())
	path := s.Screenshot(t, "browser session/test")
	if b, err := os.ReadFile(path); err != nil || !strings.HasPrefix(string(b), "\x89PNG") {
		t.Errorf("screenshot %s: not a PNG (%v)", path, err)
	}
}

func TestFind(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if path, ok := Find(); ok && !strings.HasPrefix(path, "/usr/lib/chromium") {
		t.Errorf("Find() = %q with an empty PATH", path)
	}
}
