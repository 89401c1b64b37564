package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/posture"
	"github.com/holdfast/holdfast/internal/repo"
)

// Sampler checks a random sample of objects on an interval: each one is
// read in full from the store and authenticated, padding included, so
// that the provider deleting or altering data nobody reads is noticed —
// as a metric and an error in the log — and not only at the next full
// `holdfast verify`.
type Sampler struct {
	Repo     *repo.Repo
	Interval time.Duration // between rounds (default 10 minutes)
	Count    int           // objects per round (default 16)
	Metrics  *Metrics      // may be nil
	Log      *slog.Logger  // may be nil
	// Guard, if set, gives each check its permission; while keys are
	// sealed a round stops (ErrSealed) without checking anything.
	Guard *posture.Guard
}

// Run runs rounds until ctx is done.
func (s *Sampler) Run(ctx context.Context) {
	d := s.Interval
	if d <= 0 {
		d = 10 * time.Minute
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _, _ = s.Round(ctx)
		}
	}
}

// Round checks one sample and returns how many objects it checked and how
// many were damaged. An error means the round could not be completed
// (the catalog or the store could not be read): not a verdict on the data.
func (s *Sampler) Round(ctx context.Context) (checked, damaged int, err error) {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := s.Count
	if n <= 0 {
		n = 16
	}
	sample, err := s.pick(ctx, n)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range sample {
		status, err := s.checkGuarded(ctx, e)
		if errors.Is(err, posture.ErrSealed) {
			return checked, damaged, err
		}
		if err != nil {
			log.Warn("sample check could not read an object", "error", err.Error())
			if ctx.Err() != nil {
				return checked, damaged, ctx.Err()
			}
			continue
		}
		checked++
		if s.Metrics != nil {
			s.Metrics.Sampled(string(status))
		}
		if status != repo.StatusOK {
			damaged++
			log.Error("integrity alert: the sample check found a damaged object; run holdfast verify",
				"status", string(status), "bucket", e.Bucket, "key", e.Key)
		}
	}
	return checked, damaged, nil
}

// checkGuarded is check under the guard's permission, if there is one.
func (s *Sampler) checkGuarded(ctx context.Context, e catalog.Entry) (repo.Status, error) {
	if s.Guard != nil {
		release, err := s.Guard.Acquire()
		if err != nil {
			return "", err
		}
		defer release()
	}
	return s.check(ctx, e)
}

// pick draws up to n current objects uniformly (reservoir sampling over
// the catalog, bucket by bucket).
func (s *Sampler) pick(ctx context.Context, n int) ([]catalog.Entry, error) {
	bs, err := s.Repo.Buckets(ctx)
	if err != nil {
		return nil, err
	}
	var res []catalog.Entry
	seen := 0
	for _, b := range bs {
		err := s.Repo.Catalog().List(ctx, b.Name, "", "", func(e catalog.Entry) error {
			seen++
			if len(res) < n {
				res = append(res, e)
			} else if j := rand.IntN(seen); j < n {
				res[j] = e
			}
			return ctx.Err()
		})
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

// check reads e in full; damage is a status, anything else an error.
func (s *Sampler) check(ctx context.Context, e catalog.Entry) (repo.Status, error) {
	rd, err := s.Repo.OpenObject(ctx, e.Bucket, e.Key)
	if err == nil {
		_, err = rd.WriteTo(ctx, io.Discard)
		rd.Close()
	}
	var de *repo.DamageError
	switch {
	case err == nil:
		return repo.StatusOK, nil
	case errors.As(err, &de):
		return de.Status, nil
	case errors.Is(err, repo.ErrNotFound):
		return repo.StatusOK, nil // deleted since it was picked
	}
	return "", err
}
