package admin

// This file holds the live trace of one client.

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/protogate/protogate/gateway"
)

// Trace bounds.
const (
	defaultTraceDuration = 5 * time.Minute
	maxTracePayload      = 1024
	traceWriteTimeout    = 10 * time.Second // a reader that takes no event this long ends its trace
)

type traceEventJSON struct {
	Time       string `json:"time"`
	Conn       string `json:"conn"`
	ClientID   string `json:"clientid"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	Size       int    `json:"size"`
	Topic      string `json:"topic,omitempty"`
	Code       string `json:"code"`
	Error      string `json:"error,omitempty"`
	Reason     string `json:"reason,omitempty"`
	DurationUS int64  `json:"duration_us"`
	Payload    string `json:"payload,omitempty"`
	Lost       uint64 `json:"lost,omitempty"`
}

func (s *Server) trace(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	clientID, handle := q.Get("clientid"), q.Get("conn")
	if (clientID == "") == (handle == "") {
		badRequest(w, "clientid, conn: give exactly one")
		return
	}
	payload := 0
	if v := q.Get("payload"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxTracePayload {
			badRequest(w, fmt.Sprintf("payload: %q is not a byte count in 0..%d", v, maxTracePayload))
			return
		}
		payload = n
	}
	d := defaultTraceDuration
	if v := q.Get("duration"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d <= 0 || d > s.cfg.MaxTraceDuration {
			badRequest(w, fmt.Sprintf("duration: %q is not a duration in (0, %v], such as 5m", v, s.cfg.MaxTraceDuration))
			return
		}
	}
	sse := false
	switch v := q.Get("format"); v {
	case "":
		sse = r.Header.Get("Accept") == "text/event-stream"
	case "sse":
		sse = true
	case "jsonl":
	default:
		badRequest(w, fmt.Sprintf("format: %q is not sse or jsonl", v))
		return
	}
	var c *gateway.Conn
	if clientID != "" {
		c = s.cfg.Gateway.ClientConn(clientID)
	} else if cc, err := s.cfg.Gateway.Lookup(handle); err == nil {
		c = cc
	}
	if c == nil {
		notFound(w, "no such client connected: "+clientID+handle)
		return
	}
	t, err := s.startTrace(c, payload)
	if err != nil {
		switch {
		case errors.Is(err, errTooManyTraces):
			writeError(w, http.StatusTooManyRequests, "TOO_MANY_REQUESTS", err.Error())
		case errors.Is(err, gateway.ErrTraced):
			writeError(w, http.StatusConflict, "CONFLICT", "client "+clientID+handle+" is already traced")
		case errors.Is(err, errClosed):
			writeError(w, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", err.Error())
		default:
			notFound(w, "no such client connected: "+clientID+handle)
		}
		return
	}
	defer s.stopTrace(t)
	s.log.Info("admin: trace started", "conn", c.Handle(), "clientid", c.ClientID(), "duration", d, "remote", r.RemoteAddr)

	rc := http.NewResponseController(w)
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc.Flush()

	// write writes one event; flush sends what was written. Events
	// already queued go out in one flush, not one write each.
	write := func(ev traceEventJSON) bool {
		b, _ := json.Marshal(ev)
		rc.SetWriteDeadline(time.Now().Add(traceWriteTimeout))
		var err error
		if sse {
			_, err = fmt.Fprintf(w, "data: %s\n\n", b)
		} else {
			_, err = w.Write(append(b, '\n'))
		}
		return err == nil
	}
	flush := func() bool { return rc.Flush() == nil }
	timer := time.NewTimer(d)
	defer timer.Stop()
	end := func(why string) {
		write(traceEventJSON{Time: rfc3339(time.Now()), Conn: c.Handle(), ClientID: c.ClientID(),
			Kind: "end", Name: why, Code: "SUCCESS", Lost: t.Lost()})
		flush()
	}
	for {
		select {
		case ev, ok := <-t.Events():
			for {
				if !ok {
					flush()
					return
				}
				if !write(s.traceView(c, &ev, t)) {
					return
				}
				if ev.Kind == gateway.TraceEnd {
					flush()
					return
				}
				select {
				case ev, ok = <-t.Events():
					continue
				default:
				}
				break
			}
			if !flush() {
				return
			}
		case <-timer.C:
			end("trace_duration_elapsed")
			return
		case <-s.done:
			end("admin_shutdown")
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) traceView(c *gateway.Conn, ev *gateway.TraceEvent, t *gateway.Trace) traceEventJSON {
	tj := traceEventJSON{
		Time: ev.Time.UTC().Format(time.RFC3339Nano), Conn: c.Handle(), ClientID: c.ClientID(),
		Kind: ev.Kind.String(), Name: ev.Name, Size: ev.Size, Topic: ev.Topic,
		Code: ev.Code.String(), Error: ev.Err, Reason: ev.Reason, DurationUS: ev.Duration.Microseconds(),
	}
	if len(ev.Payload) > 0 {
		tj.Payload = hex.EncodeToString(ev.Payload)
	}
	if ev.Kind == gateway.TraceEnd {
		tj.Lost = t.Lost()
	}
	return tj
}

var (
	errTooManyTraces = errors.New("admin: too many traces running")
	errClosed        = errors.New("admin: shutting down")
)

// startTrace starts a trace of c, within MaxTraces.
func (s *Server) startTrace(c *gateway.Conn, payload int) (*gateway.Trace, error) {
	s.traceMu.Lock()
	defer s.traceMu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if len(s.traces) >= s.cfg.MaxTraces {
		return nil, fmt.Errorf("%w: %d at most; stop one first", errTooManyTraces, s.cfg.MaxTraces)
	}
	t, err := c.Trace(payload)
	if err != nil {
		return nil, err
	}
	s.traces[t] = struct{}{}
	return t, nil
}

func (s *Server) stopTrace(t *gateway.Trace) {
	t.Stop()
	s.traceMu.Lock()
	delete(s.traces, t)
	s.traceMu.Unlock()
}

// NumTraces returns how many traces are running.
func (s *Server) NumTraces() int {
	s.traceMu.Lock()
	defer s.traceMu.Unlock()
	return len(s.traces)
}
