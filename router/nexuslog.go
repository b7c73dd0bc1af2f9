package router

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/php-wamp-observer/php-wamp-observer/ratelog"
)

// nexusLogger adapts slog to nexus's Print-style logger. nexus logs per
// message in some situations (a late YIELD after a caller left, a peer it
// cannot write to), so its lines are rate limited like any other trouble.
type nexusLogger struct{ log *ratelog.Logger }

func newNexusLogger(log *slog.Logger) nexusLogger {
	return nexusLogger{ratelog.New(log.With(slog.String("component", "nexus")), time.Second, nil)}
}

// nexusKind is the one rate-limit kind of nexus's lines: they carry ids,
// so their texts are not kinds.
const nexusKind = "nexus"

func (l nexusLogger) Print(v ...any) { l.log.Log(slog.LevelInfo, nexusKind, fmt.Sprint(v...)) }
func (l nexusLogger) Println(v ...any) {
	l.log.Log(slog.LevelInfo, nexusKind, strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}
func (l nexusLogger) Printf(format string, v ...any) {
	l.log.Log(slog.LevelInfo, nexusKind, fmt.Sprintf(format, v...))
}
