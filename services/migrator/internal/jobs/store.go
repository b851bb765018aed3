package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/veltrixdb/veltrix/pkg/topology"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Sentinel errors; use errors.Is.
var (
	// ErrNotFound reports an unknown job id.
	ErrNotFound = errors.New("jobs: job not found")
	// ErrExists reports a job id already used by a job of another kind.
	ErrExists = errors.New("jobs: job id already used")
	// ErrFinished reports a change to a job that has already ended.
	ErrFinished = errors.New("jobs: job already finished")
	// ErrInvalid reports a bad job id or page token.
	ErrInvalid = errors.New("jobs: invalid argument")
	// ErrClaimLost reports that this migrator no longer holds a claim it
	// was working under (its lease expired, or the job ended).
	ErrClaimLost = errors.New("jobs: claim lost")
	// ErrNotRetryable reports a retry of a job that succeeded or has not
	// ended.
	ErrNotRetryable = errors.New("jobs: job cannot be retried")
)

var jobIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// ValidateID checks a caller-chosen job id: 1 to 128 characters of
// [A-Za-z0-9_.-], starting with a letter or digit.
func ValidateID(id string) error {
	if !jobIDRE.MatchString(id) {
		return fmt.Errorf("%w: job id %q: want 1 to 128 characters of [A-Za-z0-9_.-] starting with a letter or digit", ErrInvalid, id)
	}
	return nil
}

// Terminal reports whether a job state is final (until RetryJob).
func Terminal(s migratorv1.JobState) bool {
	switch s {
	case migratorv1.JobState_JOB_STATE_SUCCEEDED, migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS,
		migratorv1.JobState_JOB_STATE_FAILED, migratorv1.JobState_JOB_STATE_CANCELLED:
		return true
	}
	return false
}

// Retryable reports whether a job in state s can run again under its id.
func Retryable(s migratorv1.JobState) bool {
	return s == migratorv1.JobState_JOB_STATE_FAILED || s == migratorv1.JobState_JOB_STATE_CANCELLED ||
		s == migratorv1.JobState_JOB_STATE_COMPLETED_WITH_ERRORS
}

// Store keeps jobs in etcd. Layout below topology.Keys.Job(id):
//
//	<job>                              the Job (protojson): spec, state, times, error,
//	                                   totals; verify progress and report
//	<job>/files/<index>                Checkpoint of data file <index> (6 digits, the
//	                                   file's line in manifest-files.json)
//	<job>/claims/<index>               id of the migrator reading the file, under that
//	                                   migrator's lease; <job>/claims/verify for verify
//	<job>/rejects/<index>/<line>       Reject (protojson); line is 12 digits; a reject
//	                                   of a whole file has a -reason suffix
//	<job>/rejects/manifest/<reason>    rejects about the manifests
//	<job>/mismatches/<seq>             the verify report's Mismatch list (8 digits)
//	<job>/shards/<shard id>            a stream job's shard checkpoints (package checkpoint)
//	<job>/segments/<segment>           a table-scan import's segment checkpoints
//	<job>/rejects/stream/<shard>/<seq> a stream job's dead-letter records
//	<job>/rejects/scan/<segment>/<n>   a table-scan job's dead-letter records
type Store struct {
	cli  *clientv3.Client
	keys topology.Keys
}

// NewStore returns the job store of cluster.
func NewStore(cli *clientv3.Client, cluster string) *Store {
	return &Store{cli: cli, keys: topology.NewKeys(cluster)}
}

// Client is the etcd client.
func (s *Store) Client() *clientv3.Client { return s.cli }

// JobsPrefix is the prefix of every job key.
func (s *Store) JobsPrefix() string { return s.keys.JobsPrefix() }

func (s *Store) jobKey(id string) string         { return s.keys.Job(id) }
func (s *Store) filesPrefix(id string) string    { return s.keys.Job(id) + "/files/" }
func (s *Store) claimsPrefix(id string) string   { return s.keys.Job(id) + "/claims/" }
func (s *Store) rejectsPrefix(id string) string  { return s.keys.Job(id) + "/rejects/" }
func (s *Store) mismatchPrefix(id string) string { return s.keys.Job(id) + "/mismatches/" }

// FileName is the checkpoint and claim name of data file index.
func FileName(index int) string { return fmt.Sprintf("%06d", index) }

// Claim names of the jobs one migrator runs at a time.
const (
	// VerifyClaim is the claim of a verify job.
	VerifyClaim = "verify"
	// StreamClaim is the claim of a stream (CDC) job.
	StreamClaim = "stream"
	// ScanClaim is the claim of a table-scan import.
	ScanClaim = "scan"
)

// ClaimKey is the etcd key of claim name of job id.
func (s *Store) ClaimKey(id, name string) string { return s.claimsPrefix(id) + name }

// ShardsPrefix is where a stream job's per-shard checkpoints live
// (package checkpoint).
func (s *Store) ShardsPrefix(id string) string { return s.keys.Job(id) + "/shards/" }

// SegmentsPrefix is where a table-scan import's per-segment checkpoints
// live (package checkpoint).
func (s *Store) SegmentsPrefix(id string) string { return s.keys.Job(id) + "/segments/" }

// OwnsClaim is the comparison that holds while lease holds claim name of
// job id: the guard of every write a claimed run makes.
func (s *Store) OwnsClaim(id, name string, lease clientv3.LeaseID) clientv3.Cmp {
	return clientv3.Compare(clientv3.LeaseValue(s.ClaimKey(id, name)), "=", lease)
}

// SplitKey returns the job id of an etcd key below the jobs prefix and the
// rest of the key after the id ("" for the job document itself).
func (s *Store) SplitKey(key string) (id, rest string, ok bool) {
	k, ok := strings.CutPrefix(key, s.keys.JobsPrefix())
	if !ok || k == "" {
		return "", "", false
	}
	id, rest, _ = strings.Cut(k, "/")
	return id, rest, true
}

var marshal = protojson.MarshalOptions{UseProtoNames: true}

func decodeJob(b []byte) (*migratorv1.Job, error) {
	j := &migratorv1.Job{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, j); err != nil {
		return nil, fmt.Errorf("jobs: decode job: %w", err)
	}
	return j, nil
}

// Create stores a new job. When the id is taken by a job of the same kind
// it returns that job and existed true; of another kind, ErrExists.
func (s *Store) Create(ctx context.Context, j *migratorv1.Job) (_ *migratorv1.Job, existed bool, _ error) {
	b, err := marshal.Marshal(j)
	if err != nil {
		return nil, false, fmt.Errorf("jobs: encode job %s: %w", j.GetId(), err)
	}
	key := s.jobKey(j.GetId())
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, false, fmt.Errorf("jobs: create job %s: %w", j.GetId(), err)
	}
	if resp.Succeeded {
		return j, false, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return nil, false, fmt.Errorf("jobs: create job %s: lost a race with its deletion; retry", j.GetId())
	}
	old, err := decodeJob(kvs[0].Value)
	if err != nil {
		return nil, false, err
	}
	if old.GetKind() != j.GetKind() {
		return nil, false, fmt.Errorf("%w: %s is a %s job", ErrExists, j.GetId(), old.GetKind())
	}
	return old, true, nil
}

// Get reads a job document (without aggregated progress).
func (s *Store) Get(ctx context.Context, id string) (*migratorv1.Job, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, s.jobKey(id))
	if err != nil {
		return nil, fmt.Errorf("jobs: get job %s: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return decodeJob(resp.Kvs[0].Value)
}

// Update applies fn to the stored job and writes it back, retrying on
// concurrent changes. fn returning an error aborts the update.
func (s *Store) Update(ctx context.Context, id string, fn func(*migratorv1.Job) error) (*migratorv1.Job, error) {
	return s.UpdateGuarded(ctx, id, nil, fn)
}

// UpdateGuarded is Update that writes only while every guard holds, and
// fails with ErrClaimLost otherwise (a migrator that lost a job must not
// overwrite the progress of the one that took it over).
func (s *Store) UpdateGuarded(ctx context.Context, id string, guards []clientv3.Cmp, fn func(*migratorv1.Job) error) (*migratorv1.Job, error) {
	key := s.jobKey(id)
	for {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("jobs: read job %s: %w", id, err)
		}
		if len(resp.Kvs) == 0 {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		j, err := decodeJob(resp.Kvs[0].Value)
		if err != nil {
			return nil, err
		}
		before := proto.Clone(j)
		if err := fn(j); err != nil {
			return j, err
		}
		if proto.Equal(before, j) {
			return j, nil
		}
		b, err := marshal.Marshal(j)
		if err != nil {
			return nil, fmt.Errorf("jobs: encode job %s: %w", id, err)
		}
		cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)}, guards...)
		tr, err := s.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, string(b))).Commit()
		if err != nil {
			return nil, fmt.Errorf("jobs: write job %s: %w", id, err)
		}
		if tr.Succeeded {
			return j, nil
		}
		if len(guards) > 0 {
			// Tell a lost guard from a concurrent change of the job.
			g, err := s.cli.Txn(ctx).If(guards...).Commit()
			if err != nil {
				return nil, fmt.Errorf("jobs: write job %s: %w", id, err)
			}
			if !g.Succeeded {
				return nil, fmt.Errorf("%w: job %s", ErrClaimLost, id)
			}
		}
	}
}

// Finish moves a job that has not ended to state (a terminal one), with
// errMsg for FAILED. It returns ErrFinished if the job had already ended.
func (s *Store) Finish(ctx context.Context, id string, state migratorv1.JobState, errMsg string, now time.Time, also func(*migratorv1.Job)) (*migratorv1.Job, error) {
	return s.FinishAttempt(ctx, id, 0, state, errMsg, now, also)
}

// FinishAttempt is Finish for the run of one attempt of the job (0: any):
// if the job was retried since that run started (RetryJob), the run is
// stale and its outcome is not recorded (ErrFinished).
func (s *Store) FinishAttempt(ctx context.Context, id string, attempt uint32, state migratorv1.JobState, errMsg string, now time.Time, also func(*migratorv1.Job)) (*migratorv1.Job, error) {
	return s.Update(ctx, id, func(j *migratorv1.Job) error {
		if Terminal(j.GetState()) {
			return fmt.Errorf("%w: %s is %s", ErrFinished, id, j.GetState())
		}
		if attempt != 0 && j.GetAttempts() != attempt {
			return fmt.Errorf("%w: %s was retried (attempt %d) since this run of attempt %d began", ErrFinished, id, j.GetAttempts(), attempt)
		}
		j.State = state
		j.Error = errMsg
		j.EndTime = timestamp(now)
		if j.StartTime == nil && state != migratorv1.JobState_JOB_STATE_CANCELLED {
			j.StartTime = timestamp(now)
		}
		if also != nil {
			also(j)
		}
		return nil
	})
}

// Retry moves a FAILED, COMPLETED_WITH_ERRORS or CANCELLED job back to
// PENDING under the same id, so the managers run it again: attempts goes
// up by one; error, problems, health and end time are cleared. What the
// job had done stays where its runner resumes from it:
//
//   - an import keeps its file (or Scan segment) checkpoints and rejects,
//     so finished files are not read again and the totals stay exact;
//     only a file rejected whole without being read (missing, or failing
//     its checksum) loses its checkpoint and reject, to be read again;
//   - a stream keeps its shard checkpoints and counters, and resumes
//     after the last record it applied (starting over from LATEST would
//     skip what arrived in between);
//   - a verify starts over: its progress, report, mismatches and rejects
//     are dropped in the same transaction.
//
// A job that succeeded or has not ended is ErrNotRetryable.
func (s *Store) Retry(ctx context.Context, id string) (*migratorv1.Job, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	key := s.jobKey(id)
	for {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("jobs: read job %s: %w", id, err)
		}
		if len(resp.Kvs) == 0 {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		j, err := decodeJob(resp.Kvs[0].Value)
		if err != nil {
			return nil, err
		}
		switch st := j.GetState(); {
		case st == migratorv1.JobState_JOB_STATE_SUCCEEDED:
			return nil, fmt.Errorf("%w: job %s already SUCCEEDED; start a new job (another id) to run it again", ErrNotRetryable, id)
		case !Retryable(st):
			return nil, fmt.Errorf("%w: job %s is %s; only a FAILED, COMPLETED_WITH_ERRORS or CANCELLED job can be retried (cancel it first)",
				ErrNotRetryable, id, strings.TrimPrefix(st.String(), "JOB_STATE_"))
		}
		j.State = migratorv1.JobState_JOB_STATE_PENDING
		j.Attempts = max(j.GetAttempts(), 1) + 1
		j.Error, j.Problems, j.EndTime, j.Health, j.Owners = "", nil, nil, nil, nil
		ops := []clientv3.Op{}
		if j.GetKind() == migratorv1.JobKind_JOB_KIND_IMPORT && j.GetImportSpec().GetTableScan() == nil {
			// A data file rejected whole before any line was read (missing,
			// or failing its checksum: done but never verified) is read
			// again: the user may have restored it. Its checkpoint and its
			// file-level reject go, so the totals stay exact.
			cps, err := s.Checkpoints(ctx, id)
			if err != nil {
				return nil, err
			}
			var again []clientv3.Op
			for name, cp := range cps {
				if cp.Done && !cp.MD5Verified {
					again = append(again, clientv3.OpDelete(s.filesPrefix(id)+name),
						clientv3.OpDelete(s.rejectsPrefix(id)+name+"/", clientv3.WithPrefix()))
				}
			}
			if len(again) <= maxTxnOps-4 {
				ops = append(ops, again...)
			} else {
				// Too many for one transaction; the job has ended, so no
				// runner writes them meanwhile.
				for lo := 0; lo < len(again); lo += maxTxnOps {
					if _, err := s.cli.Txn(ctx).Then(again[lo:min(lo+maxTxnOps, len(again))]...).Commit(); err != nil {
						return nil, fmt.Errorf("jobs: retry job %s: reset files: %w", id, err)
					}
				}
			}
		}
		if j.GetKind() == migratorv1.JobKind_JOB_KIND_VERIFY {
			j.Progress, j.VerifyReport = &migratorv1.Progress{}, nil
			ops = append(ops,
				clientv3.OpDelete(s.mismatchPrefix(id), clientv3.WithPrefix()),
				clientv3.OpDelete(s.rejectsPrefix(id), clientv3.WithPrefix()))
		}
		b, err := marshal.Marshal(j)
		if err != nil {
			return nil, fmt.Errorf("jobs: encode job %s: %w", id, err)
		}
		ops = append(ops, clientv3.OpPut(key, string(b)))
		tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("jobs: retry job %s: %w", id, err)
		}
		if tr.Succeeded {
			return j, nil
		}
	}
}

// List returns every job document, newest first. It skips the keys below
// each job (checkpoints, rejects) instead of reading them.
func (s *Store) List(ctx context.Context) ([]*migratorv1.Job, error) {
	prefix := s.keys.JobsPrefix()
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	var out []*migratorv1.Job
	for {
		resp, err := s.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(64))
		if err != nil {
			return nil, fmt.Errorf("jobs: list jobs: %w", err)
		}
		jumped := false
		for _, kv := range resp.Kvs {
			id, rest, ok := s.SplitKey(string(kv.Key))
			if !ok {
				continue
			}
			if rest != "" {
				// Below a job: go on after all of the job's keys ('0'
				// follows '/').
				from, jumped = s.jobKey(id)+"0", true
				break
			}
			j, err := decodeJob(kv.Value)
			if err != nil {
				return nil, fmt.Errorf("%w (key %s)", err, kv.Key)
			}
			out = append(out, j)
			from = string(kv.Key) + "\x00"
		}
		if !jumped && !resp.More {
			break
		}
	}
	sortNewestFirst(out)
	return out, nil
}

// Checkpoint is the progress of one data file. Every line up to Lines has
// been applied (or rejected, filtered, skipped), and the counters count
// exactly those lines, so a migrator resuming the file re-reads it from the
// start, skips Lines lines, and the job's totals stay exact.
type Checkpoint struct {
	// File is the data file's path in the export.
	File string `json:"file"`
	// Done is set once the whole file is accounted for.
	Done bool `json:"done"`
	// Lines is the number of lines committed.
	Lines int64 `json:"lines"`
	// Records is the number of non-blank lines among them.
	Records int64 `json:"records"`
	// Items and Deletes are the puts and deletes written; Superseded is
	// how many of Items Veltrix already held at a newer version.
	Items      int64 `json:"items"`
	Superseded int64 `json:"superseded,omitempty"`
	Deletes    int64 `json:"deletes"`
	// SkippedExpired and Filtered are items not written.
	SkippedExpired int64 `json:"skipped_expired"`
	Filtered       int64 `json:"filtered"`
	// Rejects is the number of dead-letter records of the file.
	Rejects int64 `json:"rejects"`
	// LineRejects is the number of lines (or their writes) rejected: the
	// file's items that were not imported.
	LineRejects int64 `json:"line_rejects"`
	// Unread says why the file, or its rest, was not read: "checksum",
	// "missing" or "corrupt" (see fileTally); "" when read to its end.
	Unread string `json:"unread,omitempty"`
	// Bytes is the decompressed bytes of the committed lines.
	Bytes int64 `json:"bytes"`
	// MD5Verified is set once the file's MD5 matched the manifest's; ETag
	// pins the object that was checked.
	MD5Verified bool   `json:"md5_verified"`
	ETag        string `json:"etag,omitempty"`
	// Owner is the migrator that wrote the checkpoint, at UpdateTime.
	Owner      string    `json:"owner"`
	UpdateTime time.Time `json:"update_time"`
}

// Checkpoints returns the checkpoints of a job by file name.
func (s *Store) Checkpoints(ctx context.Context, id string) (map[string]Checkpoint, error) {
	resp, err := s.cli.Get(ctx, s.filesPrefix(id), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("jobs: read checkpoints of %s: %w", id, err)
	}
	out := make(map[string]Checkpoint, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var cp Checkpoint
		if err := json.Unmarshal(kv.Value, &cp); err != nil {
			return nil, fmt.Errorf("jobs: decode checkpoint %s: %w", kv.Key, err)
		}
		out[strings.TrimPrefix(string(kv.Key), s.filesPrefix(id))] = cp
	}
	return out, nil
}

// Checkpoint reads one checkpoint; a file not started has the zero one.
func (s *Store) Checkpoint(ctx context.Context, id, name string) (Checkpoint, error) {
	var cp Checkpoint
	resp, err := s.cli.Get(ctx, s.filesPrefix(id)+name)
	if err != nil {
		return cp, fmt.Errorf("jobs: read checkpoint %s/%s: %w", id, name, err)
	}
	if len(resp.Kvs) > 0 {
		if err := json.Unmarshal(resp.Kvs[0].Value, &cp); err != nil {
			return cp, fmt.Errorf("jobs: decode checkpoint %s/%s: %w", id, name, err)
		}
	}
	return cp, nil
}

// PutCheckpoint writes a checkpoint if this migrator (lease) still holds
// the file's claim, and ErrClaimLost otherwise.
func (s *Store) PutCheckpoint(ctx context.Context, id, name string, lease clientv3.LeaseID, cp Checkpoint) error {
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	claim := s.claimsPrefix(id) + name
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(claim), "=", lease)).
		Then(clientv3.OpPut(s.filesPrefix(id)+name, string(b))).Commit()
	if err != nil {
		return fmt.Errorf("jobs: write checkpoint %s/%s: %w", id, name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: job %s file %s", ErrClaimLost, id, name)
	}
	return nil
}

// Claim takes the claim name of a job for owner under lease, if nobody
// holds it. It reports whether this call (or an earlier one under the same
// lease) holds it.
func (s *Store) Claim(ctx context.Context, id, name, owner string, lease clientv3.LeaseID) (bool, error) {
	key := s.claimsPrefix(id) + name
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, owner, clientv3.WithLease(lease))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return false, fmt.Errorf("jobs: claim %s/%s: %w", id, name, err)
	}
	if resp.Succeeded {
		return true, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	return len(kvs) > 0 && clientv3.LeaseID(kvs[0].Lease) == lease, nil
}

// Release drops a claim held under lease.
func (s *Store) Release(ctx context.Context, id, name string, lease clientv3.LeaseID) error {
	key := s.claimsPrefix(id) + name
	_, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", lease)).
		Then(clientv3.OpDelete(key)).Commit()
	if err != nil {
		return fmt.Errorf("jobs: release %s/%s: %w", id, name, err)
	}
	return nil
}

// Claims returns the claims of a job: name → owner.
func (s *Store) Claims(ctx context.Context, id string) (map[string]string, error) {
	resp, err := s.cli.Get(ctx, s.claimsPrefix(id), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("jobs: read claims of %s: %w", id, err)
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), s.claimsPrefix(id))] = string(kv.Value)
	}
	return out, nil
}

// RejectKey is where a reject of data file index at line is stored; tag
// tells apart several rejects of one line (or of a whole file, line 0).
func RejectKey(index int, line int64, tag string) string {
	k := FileName(index) + "/" + fmt.Sprintf("%012d", line)
	if tag != "" {
		k += "-" + tag
	}
	return k
}

// StreamRejectKey is where the reject of a stream record is stored.
func StreamRejectKey(shard, seq string) string { return "stream/" + shard + "/" + seq }

// ScanRejectKey is where the reject of a scanned item is stored: segment,
// then a sequence unique within the run (tag).
func ScanRejectKey(segment int, tag string) string { return fmt.Sprintf("scan/%06d/%s", segment, tag) }

// ManifestRejectKey is where a reject about the manifests is stored.
func ManifestRejectKey(tag string) string { return "manifest/" + tag }

// StoredReject is a reject and its key (see RejectKey).
type StoredReject struct {
	Key    string
	Reject *migratorv1.Reject
}

// maxTxnOps stays below etcd's default --max-txn-ops (128).
const maxTxnOps = 100

// PutRejects stores rejects. Keys are derived from file and line, so
// storing the same rejects again (a resumed file) overwrites them.
func (s *Store) PutRejects(ctx context.Context, id string, rs []StoredReject) error {
	for lo := 0; lo < len(rs); lo += maxTxnOps {
		hi := min(lo+maxTxnOps, len(rs))
		ops := make([]clientv3.Op, 0, hi-lo)
		for _, r := range rs[lo:hi] {
			b, err := marshal.Marshal(r.Reject)
			if err != nil {
				return err
			}
			ops = append(ops, clientv3.OpPut(s.rejectsPrefix(id)+r.Key, string(b)))
		}
		if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("jobs: store rejects of %s: %w", id, err)
		}
	}
	return nil
}

// CountRejects returns how many rejects of a job are stored.
func (s *Store) CountRejects(ctx context.Context, id string) (int64, error) {
	return s.countPrefix(ctx, s.rejectsPrefix(id))
}

func (s *Store) countPrefix(ctx context.Context, prefix string) (int64, error) {
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("jobs: count %s: %w", prefix, err)
	}
	return resp.Count, nil
}

// RejectKeys returns the keys (see RejectKey) of a job's stored rejects.
// Only the first Env.MaxStoredRejects rejects are stored, so a key missing
// here may still have been a reject: callers treat that as not rejected.
func (s *Store) RejectKeys(ctx context.Context, id string) ([]string, error) {
	prefix := s.rejectsPrefix(id)
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("jobs: read rejects of %s: %w", id, err)
	}
	out := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, strings.TrimPrefix(string(kv.Key), prefix))
	}
	return out, nil
}

// ListRejects returns up to pageSize rejects after page token tok (a
// reject key), in key order: by file, then line.
func (s *Store) ListRejects(ctx context.Context, id string, pageSize int, tok string) ([]*migratorv1.Reject, string, error) {
	return listPage(ctx, s, s.rejectsPrefix(id), pageSize, tok, func() *migratorv1.Reject { return &migratorv1.Reject{} })
}

// PutMismatches stores a verify report's mismatch list.
func (s *Store) PutMismatches(ctx context.Context, id string, ms []*migratorv1.Mismatch) error {
	if _, err := s.cli.Delete(ctx, s.mismatchPrefix(id), clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("jobs: clear mismatches of %s: %w", id, err)
	}
	for lo := 0; lo < len(ms); lo += maxTxnOps {
		hi := min(lo+maxTxnOps, len(ms))
		ops := make([]clientv3.Op, 0, hi-lo)
		for i, m := range ms[lo:hi] {
			b, err := marshal.Marshal(m)
			if err != nil {
				return err
			}
			ops = append(ops, clientv3.OpPut(s.mismatchPrefix(id)+fmt.Sprintf("%08d", lo+i), string(b)))
		}
		if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("jobs: store mismatches of %s: %w", id, err)
		}
	}
	return nil
}

// Mismatches returns a verify job's stored mismatch list.
func (s *Store) Mismatches(ctx context.Context, id string) ([]*migratorv1.Mismatch, error) {
	ms, _, err := listPage(ctx, s, s.mismatchPrefix(id), 0, "", func() *migratorv1.Mismatch { return &migratorv1.Mismatch{} })
	return ms, err
}

func listPage[T proto.Message](ctx context.Context, s *Store, prefix string, pageSize int, tok string, mk func() T) ([]T, string, error) {
	from := prefix
	if tok != "" {
		if strings.ContainsAny(tok, "\x00") || !strings.HasPrefix(prefix+tok, prefix) {
			return nil, "", fmt.Errorf("%w: page token %q", ErrInvalid, tok)
		}
		from = prefix + tok + "\x00"
	}
	opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix))}
	if pageSize > 0 {
		opts = append(opts, clientv3.WithLimit(int64(pageSize)))
	}
	resp, err := s.cli.Get(ctx, from, opts...)
	if err != nil {
		return nil, "", fmt.Errorf("jobs: list %s: %w", prefix, err)
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		m := mk()
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(kv.Value, m); err != nil {
			return nil, "", fmt.Errorf("jobs: decode %s: %w", kv.Key, err)
		}
		out = append(out, m)
	}
	next := ""
	if resp.More && len(resp.Kvs) > 0 {
		next = strings.TrimPrefix(string(resp.Kvs[len(resp.Kvs)-1].Key), prefix)
	}
	return out, next, nil
}

// Delete removes a job and everything below it (tests and cleanup).
func (s *Store) Delete(ctx context.Context, id string) error {
	if _, err := s.cli.Delete(ctx, s.jobKey(id)); err != nil {
		return err
	}
	_, err := s.cli.Delete(ctx, s.jobKey(id)+"/", clientv3.WithPrefix())
	return err
}

// parseIndex reads a file name back into its index.
func parseIndex(name string) (int, bool) {
	i, err := strconv.Atoi(name)
	return i, err == nil && i >= 0
}
