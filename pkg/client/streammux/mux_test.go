package streammux

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	muxv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/mux/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type testFrames struct{}

func (testFrames) Number(c *muxv1.Call, id uint64, us int64) { c.Id, c.TimeoutMicros = id, us }
func (testFrames) Cancel(id uint64) *muxv1.Call              { return &muxv1.Call{Id: id, Cancel: true} }

// heldStream is a client stream whose sends block, once hold is set, as a
// send held by HTTP/2 flow control does, until the stream ends.
type heldStream struct {
	ctx  context.Context
	hold atomic.Bool
	sent atomic.Int64 // calls sent
	held atomic.Int64 // sends held
}

func (s *heldStream) Context() context.Context { return s.ctx }
func (s *heldStream) CloseSend() error         { return nil }

func (s *heldStream) SendCalls(calls []*muxv1.Call) error {
	if s.hold.Load() {
		s.held.Add(1)
		<-s.ctx.Done()
		return io.EOF
	}
	s.sent.Add(int64(len(calls)))
	return nil
}

func (s *heldStream) RecvResults() ([]*muxv1.Result, bool, uint64, error) {
	<-s.ctx.Done()
	return nil, false, 0, s.ctx.Err()
}

// waitFor polls cond for up to 30 s (a bound on a hang, not a timing
// assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestClientSendHeld: a caller whose call would take the calls unanswered
// beyond PeerWorkers does not send it itself (the server may read nothing
// more, and the send may be held by flow control): it returns when its
// context ends, whatever the send.
func TestClientSendHeld(t *testing.T) {
	var opened atomic.Pointer[heldStream]
	c := NewClient(ClientOptions[*muxv1.Call, *muxv1.Result]{
		Open: func(ctx context.Context) (ClientStream[*muxv1.Call, *muxv1.Result], error) {
			hs := &heldStream{ctx: ctx}
			opened.Store(hs)
			return hs, nil
		},
		Frames:      testFrames{},
		PeerWorkers: 2,
	})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.Close()
	for range 2 { // unanswered: the server's workers are busy with them
		wg.Go(func() {
			if _, err := c.Do(t.Context(), &muxv1.Call{}); status.Code(err) != codes.Canceled {
				t.Errorf("call in flight at Close: %v, want Canceled", err)
			}
		})
	}
	waitFor(t, "two calls sent", func() bool { hs := opened.Load(); return hs != nil && hs.sent.Load() == 2 })
	opened.Load().hold.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := c.Do(ctx, &muxv1.Call{})
		errc <- err
	}()
	// Sent by the caller or by a goroutine of the stream's: the send is
	// held either way.
	waitFor(t, "the third call's send held", func() bool { return opened.Load().held.Load() == 1 })
	cancel()
	select {
	case err := <-errc:
		if status.Code(err) != codes.Canceled {
			t.Fatalf("call cancelled while its send was held: %v, want Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a caller stayed in a held send past its context")
	}
}

// chanStream is a server stream fed by a test.
type chanStream struct {
	ctx context.Context
	in  chan []*muxv1.Call
	out chan *muxv1.Result
}

func (s *chanStream) Context() context.Context { return s.ctx }

func (s *chanStream) RecvCalls() ([]*muxv1.Call, error) {
	calls, ok := <-s.in
	if !ok {
		return nil, io.EOF
	}
	return calls, nil
}

func (s *chanStream) SendResults(results []*muxv1.Result, _ bool, _ uint64) error {
	for _, r := range results {
		s.out <- r
	}
	return nil
}

// holdHandler runs "hold" calls until their context ends, others at once.
type holdHandler struct{ holding atomic.Int64 }

func (h *holdHandler) Run(ctx context.Context, c *muxv1.Call) *muxv1.Result {
	if c.GetMethod() == "hold" {
		h.holding.Add(1)
		<-ctx.Done()
		return &muxv1.Result{Id: c.GetId(), Code: int32(status.FromContextError(ctx.Err()).Code())}
	}
	return &muxv1.Result{Id: c.GetId()}
}

func (h *holdHandler) Size(*muxv1.Result) int { return 1 }
func (h *holdHandler) Sent([]*muxv1.Result)   {}

// TestServerCancelsWhileWorkersBusy: with every worker running a call, the
// stream is still read: a call beyond waits for a worker, and the cancel
// frames behind it reach the calls running.
func TestServerCancelsWhileWorkersBusy(t *testing.T) {
	h := &holdHandler{}
	srv := &Server[*muxv1.Call, *muxv1.Result]{Handler: h, Logger: slog.New(slog.DiscardHandler), Workers: 2}
	st := &chanStream{ctx: t.Context(), in: make(chan []*muxv1.Call, 4), out: make(chan *muxv1.Result, 8)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(st) }()
	st.in <- []*muxv1.Call{{Id: 1, Method: "hold"}, {Id: 2, Method: "hold"}}
	waitFor(t, "both workers busy", func() bool { return h.holding.Load() == 2 })
	st.in <- []*muxv1.Call{{Id: 3}}
	st.in <- []*muxv1.Call{{Id: 1, Cancel: true}, {Id: 2, Cancel: true}}
	want := map[uint64]codes.Code{1: codes.Canceled, 2: codes.Canceled, 3: codes.OK}
	for range want {
		select {
		case r := <-st.out:
			if c := codes.Code(r.GetCode()); c != want[r.GetId()] {
				t.Errorf("call %d: %s, want %s", r.GetId(), c, want[r.GetId()])
			}
			delete(want, r.GetId())
		case <-time.After(30 * time.Second):
			t.Fatalf("calls %v unanswered: the cancel frames were not read", want)
		}
	}
	close(st.in)
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// drainStream announces its drain with the first answer it is asked for
// (taking no call) and then ends cleanly, as a server shutting down does.
type drainStream struct {
	ctx   context.Context
	recvs atomic.Int32
	ended chan struct{}
}

func (s *drainStream) Context() context.Context      { return s.ctx }
func (s *drainStream) CloseSend() error              { return nil }
func (s *drainStream) SendCalls([]*muxv1.Call) error { return nil }
func (s *drainStream) RecvResults() ([]*muxv1.Result, bool, uint64, error) {
	if s.recvs.Add(1) == 1 {
		return nil, true, 0, nil
	}
	close(s.ended)
	return nil, false, 0, io.EOF
}

// TestClientDrainCountsOnce: a stream that announces its drain and then
// ends is one break of its lane, not two, so the next stream is tried
// after the first step of the backoff (a restarted server is used again
// that much sooner).
func TestClientDrainCountsOnce(t *testing.T) {
	before := goleak.IgnoreCurrent()
	ds := &drainStream{ended: make(chan struct{})}
	c := NewClient(ClientOptions[*muxv1.Call, *muxv1.Result]{
		Open: func(ctx context.Context) (ClientStream[*muxv1.Call, *muxv1.Result], error) {
			ds.ctx = ctx
			return ds, nil
		},
		Frames: testFrames{},
	})
	defer c.Close()
	if _, err := c.Do(t.Context(), &muxv1.Call{}); err != ErrUnary {
		t.Fatalf("a call the draining server did not take: %v, want ErrUnary", err)
	}
	<-ds.ended
	// The stream's goroutine handles its end, then exits.
	if err := goleak.Find(before); err != nil {
		t.Fatal(err)
	}
	l := c.lanes[0]
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures != 1 {
		t.Fatalf("a drained stream counted %d breaks, want 1", l.failures)
	}
}
