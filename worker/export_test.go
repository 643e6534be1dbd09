package worker

import "context"

// Quiet waits until no effect of the worker runs, and reports whether it
// came before ctx ended: tests check what the effects left once they did.
func (w *Worker) Quiet(ctx context.Context) bool { return w.waitQuiet(ctx) }
