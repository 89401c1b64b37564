//go:build !linux

package harden

import "runtime"

// Apply sets nothing outside Linux: every measure is reported as not in
// effect, and the tracer as unknown.
func Apply() Report {
	why := "not supported on " + runtime.GOOS
	return Report{
		Measures: []Measure{
			{Name: MeasureCoreLimit, Error: why},
			{Name: MeasureDumpable, Error: why},
			{Name: MeasureNoNewPrivs, Error: why},
		},
		TracerError: why,
	}
}
