package engine

import "errors"

// Sentinel errors. Returned errors wrap them with details; use errors.Is.
var (
	// ErrInvalidArgument reports a request outside the engine's limits or
	// malformed input (a key, a resume token). Nothing was written.
	ErrInvalidArgument = errors.New("engine: invalid argument")
	// ErrTooLarge reports an Apply whose records add up to more than
	// Options.MaxBatchBytes, or an Ingest run over Options.MaxIngestBytes.
	// Nothing was written.
	ErrTooLarge = errors.New("engine: batch too large")
	// ErrHintsFull reports hints refused because the hints already stored
	// fill Options.MaxHintBytes. Nothing was written.
	ErrHintsFull = errors.New("engine: hint budget exhausted")
	// ErrClosed reports a call on a closed engine.
	ErrClosed = errors.New("engine: closed")
	// ErrCorrupt reports stored data the engine cannot decode.
	ErrCorrupt = errors.New("engine: corrupt data")
	// ErrWriteFailed reports that an earlier commit or WAL sync failed; the
	// engine accepts no more writes and must be reopened.
	ErrWriteFailed = errors.New("engine: write path failed")
)
