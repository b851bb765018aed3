package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	storagev1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/storage/v1"
	"github.com/veltrixdb/veltrix/services/storage/internal/engine"
	"github.com/veltrixdb/veltrix/services/storage/internal/locks"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The ErrorInfo reasons of lock refusals.
const (
	lockContendedReason = "LOCK_CONTENDED"
	lockGraceReason     = "LOCK_GRACE"
	// lockHorizonMeta names the engine metadata record holding the lock
	// horizon: no lock granted by an earlier process outlives it.
	lockHorizonMeta = "lock_horizon"
	// maxOwnerBytes bounds LockKeyRequest.owner.
	maxOwnerBytes = 256
)

// newLockTable builds the node's lock table. Its grace period ends when
// every lease an earlier process may have granted has run out: at the
// horizon stored in the directory, and at most one maximum lease after
// this process started. Every process stores a horizon before its first
// grant, so a directory without one never granted a lock and needs no
// grace, unless it is a new directory standing in for an earlier one of
// the same node id (reincarnated), whose horizon is lost with it.
func (s *Server) newLockTable(reincarnated bool) (*locks.Table, error) {
	graceUntil := s.startTime.Add(locks.MaxLease)
	b, found, err := s.eng.Meta(lockHorizonMeta)
	if err != nil {
		return nil, fmt.Errorf("storage: read lock horizon: %w", err)
	}
	switch {
	case found && len(b) == 8:
		if h := time.Unix(0, int64(binary.BigEndian.Uint64(b))); h.Before(graceUntil) {
			graceUntil = h
		}
	case found:
		s.logger.Warn("lock horizon record malformed; granting no lock for one maximum lease", "bytes", len(b))
	case !reincarnated:
		graceUntil = time.Time{}
	}
	if left := time.Until(graceUntil); left > 0 {
		s.logger.Info("lock grace period: no item lock is granted until leases from before the restart have expired", "left", left.Round(time.Millisecond))
	}
	return locks.New(locks.Options{
		GraceUntil: graceUntil,
		Persist: func(until time.Time) error {
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], uint64(until.UnixNano()))
			return s.eng.SetMeta(lockHorizonMeta, v[:])
		},
	}), nil
}

// closeLocks stops granting locks and stores when the last lease ends, so
// that a restart after a clean shutdown waits only for the leases still
// held (usually none).
func (s *Server) closeLocks() {
	if s.locks == nil || s.eng == nil {
		return
	}
	until := s.locks.Close()
	if now := time.Now(); until.Before(now) {
		until = now
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], uint64(until.UnixNano()))
	if err := s.eng.SetMeta(lockHorizonMeta, v[:]); err != nil {
		s.logger.Warn("could not store the lock horizon; the next start waits one maximum lease before granting locks", "err", err)
	}
}

// lockStatus converts a lock table refusal to its gRPC status with an
// ErrorInfo a router acts on (ok false: not a lock refusal).
func lockStatus(err error) (error, bool) {
	var (
		ce *locks.ContendedError
		ge *locks.GraceError
	)
	switch {
	case errors.As(err, &ce):
		return withInfo(codes.Aborted, err.Error(), lockContendedReason, map[string]string{"owner": ce.Owner}), true
	case errors.As(err, &ge):
		return withInfo(codes.Unavailable, err.Error(), lockGraceReason,
			map[string]string{"retry_after_millis": strconv.FormatInt(ge.Left.Milliseconds()+1, 10)}), true
	case errors.Is(err, locks.ErrClosed):
		return status.Error(codes.Unavailable, err.Error()), true
	case errors.Is(err, locks.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error()), true
	}
	return nil, false
}

func withInfo(c codes.Code, msg, reason string, md map[string]string) error {
	st := status.New(c, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: errorDomain, Metadata: md}); err == nil {
		st = d
	}
	return st.Err()
}

func lockKey(k engine.Key) locks.Key {
	return locks.Key{TableID: k.TableID, PartitionKey: string(k.PartitionKey), SortKey: string(k.SortKey)}
}

// LockKey takes one key's lock on this node: the node must hold the
// partition as a write target (as Apply), under a current placement epoch.
func (svc *service) LockKey(ctx context.Context, req *storagev1.LockKeyRequest) (*storagev1.LockKeyResponse, error) {
	lease, wait := req.GetLeaseMillis(), req.GetWaitMillis()
	maxMillis := uint32(locks.MaxLease.Milliseconds())
	if lease == 0 || lease > maxMillis {
		return nil, invalid("lease_millis %d: want 1 to %d", lease, maxMillis)
	}
	if wait > maxMillis {
		return nil, invalid("wait_millis %d: want at most %d", wait, maxMillis)
	}
	if len(req.GetOwner()) > maxOwnerBytes {
		return nil, invalid("owner: %d bytes, at most %d", len(req.GetOwner()), maxOwnerBytes)
	}
	snap, err := svc.snapshotFor(ctx, req.GetPlacementEpoch())
	if err != nil {
		return nil, toStatus(err)
	}
	k, err := svc.readKey(snap, accessWrite, req.GetPlacementEpoch(), req.GetKey(), "key", -1)
	if err != nil {
		return nil, toStatus(err)
	}
	tok, err := svc.s.locks.Lock(ctx, lockKey(k), req.GetOwner(),
		time.Duration(lease)*time.Millisecond, time.Duration(wait)*time.Millisecond)
	if err != nil {
		return nil, toStatus(fmt.Errorf("lock of %s in partition %d for %q: %w", lockKey(k), k.Partition, req.GetOwner(), err))
	}
	if wait > 0 {
		// The partition's routing may have changed while the request
		// waited: a lock granted by the old routing would not count.
		if _, err := svc.readKey(svc.s.watcher.Snapshot(), accessWrite, req.GetPlacementEpoch(), req.GetKey(), "key", -1); err != nil {
			svc.s.locks.Unlock(lockKey(k), tok)
			return nil, toStatus(err)
		}
	}
	return &storagev1.LockKeyResponse{Token: tok}, nil
}

// UnlockKey releases a lock by its token; a lock that expired or passed
// to another owner is left alone, and that is no error.
func (svc *service) UnlockKey(ctx context.Context, req *storagev1.UnlockKeyRequest) (*storagev1.UnlockKeyResponse, error) {
	if req.GetKey() == nil {
		return nil, invalid("key: missing")
	}
	k := keyFromProto(req.GetKey())
	if err := engine.ValidateKey(k); err != nil {
		return nil, invalid("key: %v", err)
	}
	if req.GetToken() == 0 {
		return nil, invalid("token: 0 is no grant")
	}
	svc.s.locks.Unlock(lockKey(k), req.GetToken())
	return &storagev1.UnlockKeyResponse{}, nil
}
