package harness

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// FlagDefaults reads the flags a program's -h documents (flag.PrintDefaults
// output) and their defaults: "" where -h shows none, which is when the
// default is the zero value.
func FlagDefaults(t testing.TB, usage string) map[string]string {
	t.Helper()
	flagLine := regexp.MustCompile(`^  -([a-z-]+)`)
	defaultOf := regexp.MustCompile(`\(default "?([^")]*)"?\)$`)
	flags := map[string]string{}
	var current string
	for line := range strings.Lines(usage) {
		line = strings.TrimRight(line, "\n")
		if m := flagLine.FindStringSubmatch(line); m != nil {
			current = m[1]
			flags[current] = ""
		} else if m := defaultOf.FindStringSubmatch(line); m != nil && current != "" {
			flags[current] = m[1]
		}
	}
	if len(flags) < 20 {
		t.Fatalf("read only %d flags from -h:\n%s", len(flags), usage)
	}
	return flags
}

// SameDefault says whether a default written in a document (the README's
// flag table, the example environment file) is the one -h shows: equal,
// "none" for an empty one, or the same duration spelt differently (1m and
// 1m0s).
func SameDefault(flagDefault, written string) bool {
	if written == flagDefault || written == "none" && flagDefault == "" {
		return true
	}
	a, err1 := time.ParseDuration(flagDefault)
	b, err2 := time.ParseDuration(written)
	return err1 == nil && err2 == nil && a == b
}

// Unit is a systemd unit file's Key=Value settings, all sections together,
// every value of a repeated key in order.
type Unit map[string][]string

// ParseUnit reads a unit file's text; name is for the failure message.
func ParseUnit(t testing.TB, name, text string) Unit {
	t.Helper()
	unit := Unit{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not Key=Value: %q", name, line)
		}
		unit[key] = append(unit[key], value)
	}
	return unit
}

// Last is the value of key that counts, the last one given; "" for none.
func (u Unit) Last(key string) string {
	if values := u[key]; len(values) > 0 {
		return values[len(values)-1]
	}
	return ""
}

// EnvSetting is one NAME=value line of an environment file.
type EnvSetting struct {
	Value string
	Line  int
}

// ParseEnvFile reads an environment file of WAMP_OBSERVER_* settings, set
// or commented out ("#NAME=value"), each named once, in the plain
// NAME=value form systemd's EnvironmentFile reads the same way as a shell;
// other lines must be comments ("# …").
func ParseEnvFile(t testing.TB, path string) map[string]EnvSetting {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	settings := map[string]EnvSetting{}
	assignment := regexp.MustCompile(`^#?(WAMP_OBSERVER_[A-Z_]+)=([^\s"'$\\]*)$`)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "# ") || line == "#" {
			continue
		}
		m := assignment.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("%s:%d: neither a comment nor NAME=value: %q", path, n, line)
			continue
		}
		if _, dup := settings[m[1]]; dup {
			t.Errorf("%s:%d: %s again", path, n, m[1])
		}
		settings[m[1]] = EnvSetting{Value: m[2], Line: n}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return settings
}
