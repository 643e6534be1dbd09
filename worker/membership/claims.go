package membership

import (
	"context"
	"errors"

	"github.com/contactcenter/presence-provider/schemas"
)

// ClaimStore is the presence_claims bucket, as claims use it (bus.Claims):
// compare-and-set on each agent's claim.
type ClaimStore interface {
	// Create takes the claim if nobody holds it.
	Create(ctx context.Context, key string, c schemas.Claim) (revision uint64, created bool, err error)
	// Update rewrites a claim held at revision.
	Update(ctx context.Context, key string, c schemas.Claim, revision uint64) (newRevision uint64, ok bool, err error)
	Get(ctx context.Context, key string) (c schemas.Claim, revision uint64, found bool, err error)
	// Delete gives the claim up if it is still at revision.
	Delete(ctx context.Context, key string, revision uint64) error
}

// Claims takes and gives up agents' claims for the worker whose lease it
// is: a claim is taken only when free or its holder's lease ended, and
// given up only while it is still this worker's.
type Claims struct {
	lease *Lease
	store ClaimStore
}

// takeTries and releaseTries bound the compare-and-set rounds of one take
// and one release: each lost round means another writer moved the claim,
// and a claim that keeps moving is left to the next attempt.
const (
	takeTries    = 3
	releaseTries = 5
)

// NewClaims returns the claims of the lease's worker in store.
func NewClaims(lease *Lease, store ClaimStore) *Claims {
	return &Claims{lease: lease, store: store}
}

// Take takes the agent's claim c (written as this worker's) with
// compare-and-set. A claim left by a worker whose lease ended, or by this
// worker's earlier process, is taken over: from names its holder then.
// rev is 0 when a live worker holds the claim.
func (cl *Claims) Take(ctx context.Context, key string, c schemas.Claim) (rev uint64, from string, err error) {
	id := cl.lease.cfg.ID
	c.Worker = id
	for range takeTries {
		rev, created, err := cl.store.Create(ctx, key, c)
		if err != nil || created {
			return rev, "", err
		}
		held, heldRev, found, err := cl.store.Get(ctx, key)
		if err != nil {
			return 0, "", err
		}
		if !found {
			continue
		}
		if held.Worker != id {
			alive, err := cl.lease.store.Alive(ctx, held.Worker)
			if err != nil {
				return 0, "", err
			}
			if alive {
				return 0, "", nil
			}
			// Its holder is gone, which the live workers this worker knows
			// may not show yet: read them first, or the attempt would hand
			// the agent over to the dead worker as soon as it succeeded.
			cl.lease.Refresh(ctx)
		}
		rev, ok, err := cl.store.Update(ctx, key, c, heldRev)
		if err != nil || ok {
			return rev, held.Worker, err
		}
	}
	return 0, "", nil
}

// Release gives up a claim this worker holds at rev. A claim write whose
// answer was lost (a cancelled request), or one still on its way, leaves
// the revision unknown: on a mismatch the claim is read again and deleted if
// it is still this worker's and unchanged says the agent's lifecycle is
// where it was when the release was decided. Otherwise the claim may be a
// newer attempt's, which deleting would leave subscribed with no claim.
func (cl *Claims) Release(ctx context.Context, key string, rev uint64, unchanged func() bool) error {
	var err error
	for range releaseTries {
		if err = cl.store.Delete(ctx, key, rev); err == nil {
			return nil
		}
		c, current, found, getErr := cl.store.Get(ctx, key)
		switch {
		case getErr != nil:
			return errors.Join(err, getErr)
		case !found || c.Worker != cl.lease.cfg.ID || !unchanged():
			return nil
		}
		rev = current
	}
	return err
}
