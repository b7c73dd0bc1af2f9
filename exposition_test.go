package observer_test

import (
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/php-wamp-observer/php-wamp-observer/internal/harness"
)

// singleRealmFamilies is every family a single-realm router exposed before
// it observed callees, error reasons, traffic and realms (written by this
// test, with WAMP_OBSERVER_WRITE_GOLDEN=1, on that version).
const singleRealmFamilies = "testdata/single-realm-families.txt"

// A single-realm router keeps every family it had, with its type, help
// text and labels unchanged: dashboards and alerts written for it go on
// working. New families come beside them; none has a realm label.
func TestSingleRealmExpositionKeepsEveryFamily(t *testing.T) {
	in := harness.Start(t, harness.Config{Log: true})
	in.CallThroughEachPath(t)
	got := describeFamilies(t, in.MetricsURL+"/metrics")
	if os.Getenv("WAMP_OBSERVER_WRITE_GOLDEN") != "" {
		if err := os.WriteFile(singleRealmFamilies, []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(singleRealmFamilies)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !slices.Contains(got, want) {
			t.Errorf("family changed or gone: %s", want)
		}
	}
	for _, family := range got {
		if labels := strings.Fields(family)[2]; strings.Contains(labels, "realm") {
			t.Errorf("a single-realm family has a realm label: %s", family)
		}
	}
}

// describeFamilies scrapes url and returns each family of the program's
// own (not the Go runtime's or the process's) as one line: name, type,
// label names and help text.
func describeFamilies(t *testing.T, url string) []string {
	t.Helper()
	rsp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer rsp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(rsp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for name, mf := range mfs {
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_") {
			continue
		}
		labels := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		names := slices.Sorted(func(yield func(string) bool) {
			for l := range labels {
				if !yield(l) {
					return
				}
			}
		})
		lines = append(lines, name+" "+mf.GetType().String()+" {"+strings.Join(names, ",")+"} "+mf.GetHelp())
	}
	slices.Sort(lines)
	return lines
}
