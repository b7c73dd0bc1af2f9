package wamplog

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/php-wamp-observer/php-wamp-observer/metrics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// numOutcomes sizes the tests' arrays indexed by metrics.Outcome, as
// metrics.Totals does.
const numOutcomes = metrics.Outcome(len(metrics.Totals{}.Calls))
