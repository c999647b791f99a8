//go:build !unix

package main

import "time"

// processCPU is not measured here: the report shows 0.
func processCPU() time.Duration { return 0 }

// machineCPU is not measured here: the report shows 0.
func machineCPU() time.Duration { return 0 }

// processesCPU is not measured here: the report shows 0.
func processesCPU(names ...string) map[string]processGroupCPU { return nil }
