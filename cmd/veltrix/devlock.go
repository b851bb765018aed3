package main

import "errors"

// devLockName is the lock file of a dev stack's data directory.
const devLockName = "veltrix-dev.lock"

// errDataDirBusy reports a data directory another dev stack holds; use
// errors.Is.
var errDataDirBusy = errors.New("data directory in use")

type dataDirBusyError struct{ msg string }

func (e *dataDirBusyError) Error() string        { return e.msg }
func (e *dataDirBusyError) Is(target error) bool { return target == errDataDirBusy }
