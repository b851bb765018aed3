package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/veltrixdb/veltrix/pkg/etcdembed"
)

// ErrMissing marks a peer whose program is not installed; the bench skips
// it with a note (and fails in CI).
var ErrMissing = errors.New("bench: peer not installed")

// RedisServerBin and RedisBenchmarkBin are the programs of the Redis peer
// (Debian's redis-server package ships both).
var (
	RedisServerBin    = "redis-server"
	RedisBenchmarkBin = "redis-benchmark"
)

// redisPipelineDepth is the pipelined Redis peer's commands per round trip.
const redisPipelineDepth = BatchKeys

// redisProcess is a redis-server this package started; it is stopped by
// its PID.
type redisProcess struct {
	cmd  *exec.Cmd
	addr string
	port int
	out  *syncBuffer
	done chan struct{}
}

// startRedis starts redis-server on 127.0.0.1 and a free port, with its data
// in dir. fsync makes every write wait for an fsync of the append-only file
// (appendfsync always); otherwise nothing is persisted.
func startRedis(ctx context.Context, dir string, fsync bool) (*redisProcess, error) {
	bin, err := exec.LookPath(RedisServerBin)
	if err != nil {
		return nil, fmt.Errorf("%w: %s not found (apt-get install -y redis-server)", ErrMissing, RedisServerBin)
	}
	var lastErr error
	for range 3 {
		p, err := launchRedis(ctx, bin, dir, fsync)
		if err == nil {
			return p, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func launchRedis(ctx context.Context, bin, dir string, fsync bool) (*redisProcess, error) {
	port, err := etcdembed.FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir, "--save", "", "--daemonize", "no", "--protected-mode", "yes"}
	if fsync {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	p := &redisProcess{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", bin, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("bench: redis-server exited at start: %s", tail(p.out.Bytes()))
		case <-ctx.Done():
			_ = p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.stop()
			return nil, fmt.Errorf("bench: redis-server not accepting connections on %s after 15s: %s", p.addr, tail(p.out.Bytes()))
		}
	}
}

// stop sends SIGTERM to the server's PID, then SIGKILL after 5s.
func (p *redisProcess) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("bench: redis-server (pid %d) did not stop on SIGTERM; killed", p.cmd.Process.Pid)
}

// redisDriver sends GET and SET with go-redis; BatchGet is MGET, or a
// pipeline of GETs when pipelined. Pipelined, it also implements Pipeliner:
// workers send their operations redisPipelineDepth at a time.
type redisDriver struct {
	p         *redisProcess
	c         *redis.Client
	pipelined bool
}

func startRedisDriver(ctx context.Context, dir string, fsync, pipelined bool, poolSize int) (*redisDriver, error) {
	p, err := startRedis(ctx, dir, fsync)
	if err != nil {
		return nil, err
	}
	c := redis.NewClient(&redis.Options{
		Addr: p.addr, PoolSize: poolSize, MinIdleConns: poolSize, Protocol: 2, DisableIdentity: true,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
	})
	if err := c.Ping(ctx).Err(); err != nil {
		return nil, errors.Join(err, c.Close(), p.stop())
	}
	return &redisDriver{p: p, c: c, pipelined: pipelined}, nil
}

func (d *redisDriver) Get(ctx context.Context, key []byte) (bool, error) {
	_, err := d.c.Get(ctx, string(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return err == nil, err
}

func (d *redisDriver) Put(ctx context.Context, key, value []byte) error {
	return d.c.Set(ctx, string(key), value, 0).Err()
}

func (d *redisDriver) BatchGet(ctx context.Context, keys [][]byte) (int, error) {
	found := 0
	if d.pipelined {
		pipe := d.c.Pipeline()
		cmds := make([]*redis.StringCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.Get(ctx, string(k))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return 0, err
		}
		for _, c := range cmds {
			if c.Err() == nil {
				found++
			}
		}
		return found, nil
	}
	ks := make([]string, len(keys))
	for i, k := range keys {
		ks[i] = string(k)
	}
	vals, err := d.c.MGet(ctx, ks...).Result()
	if err != nil {
		return 0, err
	}
	for _, v := range vals {
		if v != nil {
			found++
		}
	}
	return found, nil
}

func (d *redisDriver) PutBatch(ctx context.Context, keys, values [][]byte) error {
	pipe := d.c.Pipeline()
	for i := range keys {
		pipe.Set(ctx, string(keys[i]), values[i], 0)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// ServerCPU is redis-server's CPU time so far.
func (d *redisDriver) ServerCPU() time.Duration { return pidCPU(d.p.cmd.Process.Pid) }

func (d *redisDriver) Close() error {
	return errors.Join(d.c.Close(), d.p.stop())
}

// pipelinedRedis is the pipelined Redis peer: a redisDriver that is also a
// Pipeliner.
type pipelinedRedis struct{ *redisDriver }

func (d pipelinedRedis) Depth() int { return redisPipelineDepth }

func (d pipelinedRedis) Pipeline(ctx context.Context, ops []Op) error {
	pipe := d.c.Pipeline()
	gets := make([]*redis.StringCmd, len(ops))
	for i, op := range ops {
		if op.Kind == OpRead {
			gets[i] = pipe.Get(ctx, string(op.Key))
		} else {
			pipe.Set(ctx, string(op.Key), op.Value, 0)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	for i, g := range gets {
		if g != nil {
			ops[i].Found = g.Err() == nil
		}
	}
	return nil
}

// redisBenchmarkKey is the key pattern redis-benchmark reads with -r:
// "key:" and the number padded to 12 digits.
func redisBenchmarkKey(i uint64) string { return fmt.Sprintf("key:%012d", i) }

// loadRedisBenchmarkKeys writes the keys redis-benchmark's GET reads, so
// it reads values of the same size as every other peer.
func (d *redisDriver) loadRedisBenchmarkKeys(ctx context.Context, n uint64, values *ValueSource) error {
	const batch = 1000
	r := newRand(7)
	for lo := uint64(0); lo < n; lo += batch {
		pipe := d.c.Pipeline()
		for i := lo; i < min(lo+batch, n); i++ {
			pipe.Set(ctx, redisBenchmarkKey(i), values.Next(r), 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// RedisBenchmarkResult is what redis-benchmark reported.
type RedisBenchmarkResult struct {
	Command                     string
	Requests                    int
	RPS                         float64
	P50, P99, Max, AvgLatencyMs float64
}

// runRedisBenchmark runs `redis-benchmark -t get -P pipeline` against the
// server and parses its CSV output.
func (d *redisDriver) runRedisBenchmark(ctx context.Context, requests, clients, pipeline int, keys uint64, valueSize int) (*RedisBenchmarkResult, []string, error) {
	bin, err := exec.LookPath(RedisBenchmarkBin)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s not found", ErrMissing, RedisBenchmarkBin)
	}
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(d.p.port), "-t", "get", "-n", strconv.Itoa(requests),
		"-c", strconv.Itoa(clients), "-P", strconv.Itoa(pipeline), "-r", strconv.FormatUint(keys, 10),
		"-d", strconv.Itoa(valueSize), "--csv"}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = sysProcAttr()
	out, err := cmd.Output()
	if err != nil {
		return nil, args, fmt.Errorf("bench: redis-benchmark: %w: %s", err, tail(out))
	}
	res, err := parseRedisBenchmarkCSV(out)
	if res != nil {
		res.Requests = requests
	}
	return res, args, err
}

// parseRedisBenchmarkCSV reads redis-benchmark --csv output (7.x):
//
//	"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
//	"GET","862068.94","0.893","0.184","0.839","1.271","1.599","3.135"
func parseRedisBenchmarkCSV(out []byte) (*RedisBenchmarkResult, error) {
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("bench: redis-benchmark output: %w", err)
	}
	if len(recs) < 2 {
		return nil, fmt.Errorf("bench: redis-benchmark printed no result: %q", tail(out))
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	get := func(rec []string, name string) float64 {
		i, ok := col[name]
		if !ok || i >= len(rec) {
			return 0
		}
		v, _ := strconv.ParseFloat(rec[i], 64)
		return v
	}
	rec := recs[1]
	if _, ok := col["rps"]; !ok {
		return nil, fmt.Errorf("bench: redis-benchmark output has no rps column: %q", tail(out))
	}
	return &RedisBenchmarkResult{
		Command: rec[0], RPS: get(rec, "rps"), AvgLatencyMs: get(rec, "avg_latency_ms"),
		P50: get(rec, "p50_latency_ms"), P99: get(rec, "p99_latency_ms"), Max: get(rec, "max_latency_ms"),
	}, nil
}

func tail(b []byte) string {
	const n = 2048
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// syncBuffer is a bytes.Buffer safe for a process's stdout and stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 64<<10 {
		s.b.Reset()
	}
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}
