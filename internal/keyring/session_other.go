//go:build !linux

package keyring

import "github.com/holdfast/holdfast/internal/secret"

func sessionStore(string, secret.Key, int) error { return ErrSessionUnavailable }
func sessionLoad(string) (secret.Key, error)     { return secret.Key{}, ErrNoSession }
func sessionForget(string) (bool, error)         { return false, ErrSessionUnavailable }
