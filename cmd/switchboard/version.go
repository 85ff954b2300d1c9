package main

import (
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v0.1.0".
// Empty: the version Go recorded in the binary (a module version with
// `go install …@v0.1.0`, a VCS pseudo-version when built from a clone).
var version = ""

// buildVersion returns the version this binary reports.
func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		return "devel-" + rev + dirty
	}
	return "devel"
}
