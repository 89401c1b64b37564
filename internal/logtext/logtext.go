// Package logtext bounds text that reaches Holdfast's logs from outside —
// a client certificate's name, a field name a client sent, a bucket or
// key — so that no client can make a log line too long to be written (and
// with it the lines queued beside it).
package logtext

import (
	"strconv"
	"unicode/utf8"
)

// Clip returns s when it is at most max bytes, else its longest prefix of
// whole UTF-8 characters within max bytes, marked with s's length.
func Clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…[" + strconv.Itoa(len(s)) + " bytes]"
}
