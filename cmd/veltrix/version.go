package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func init() {
	register(command{name: "version", build: versionCmd})
}

// versionInfo is what `veltrix version` prints: the module version the
// binary was built as ("(devel)" from a work tree) and the VCS stamp Go
// records.
type versionInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	Time      string `json:"time,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

func buildVersion() versionInfo {
	v := versionInfo{Version: "unknown", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func versionCmd(c *conn) *cobra.Command {
	return leaf("version", "print the version of this binary (module version, VCS revision)", 0, 0, func(cmd *cobra.Command, _ []string) error {
		v := buildVersion()
		w := cmd.OutOrStdout()
		return c.print(w, v, func() error {
			rev := ""
			if v.Revision != "" {
				rev = " revision " + v.Revision
				if v.Modified {
					rev += " (modified)"
				}
				if v.Time != "" {
					rev += " " + v.Time
				}
			}
			_, err := fmt.Fprintf(w, "veltrix %s%s %s %s\n", v.Version, rev, v.GoVersion, v.Platform)
			return err
		})
	})
}
