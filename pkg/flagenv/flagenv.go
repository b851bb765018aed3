// Package flagenv lets every command-line flag also be set from an
// environment variable: --etcd-endpoints ↔ VELTRIX_ETCD_ENDPOINTS. A flag
// given on the command line wins over its variable.
package flagenv

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// Prefix is the environment variable prefix of every Veltrix flag.
const Prefix = "VELTRIX_"

// Name returns the environment variable of flag name.
func Name(flagName string) string {
	return Prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, then sets every flag not given on the command
// line from its environment variable, if set. An unparsable variable is an
// error naming the variable.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	return Apply(fs, os.LookupEnv)
}

// Apply sets the flags of fs that were not set on the command line from
// lookup(Name(flag)).
func Apply(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		env := Name(f.Name)
		v, ok := lookup(env)
		if !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("environment variable %s=%q: %w", env, v, e)
		}
	})
	return err
}

// StringList is a flag.Value holding a comma-separated list.
type StringList []string

// String implements flag.Value.
func (l *StringList) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value; it replaces the list.
func (l *StringList) Set(v string) error {
	*l = nil
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
