# Shortcuts; ./test.sh is the test command.
.PHONY: test bench fuzz attack

test:
	./test.sh

# RPC against stock nexus with the observer off and on, the log path
# against a bare sink, the PHP logger against the original class, and the
# hot-path microbenchmarks, in one run (about
# 20 minutes); prints markdown tables for the README. BENCHFLAGS passes
# -only, -shapes, -rounds or -duration, e.g. BENCHFLAGS='-only rpc -rounds 1'.
BENCHFLAGS ?=
bench:
	go run ./cmd/wampload bench $(BENCHFLAGS)

# The fuzz targets, each for FUZZTIME (default 10m).
FUZZTIME ?= 10m
fuzz:
	./fuzz.sh $(FUZZTIME)

# The hostile-client attacks of issue 10 at the issue's scale, each against
# a fresh router process with a normal client alongside; prints a markdown
# table. SCALE=small runs them at about 1/100 in about a minute;
# UPSTREAM=stock (or router) attacks the observing proxy (-upstream) in
# front of a fresh stock nexus (or cmd/router) instead.
SCALE ?= full
UPSTREAM ?=
attack:
	go run ./cmd/wampload attack -scale $(SCALE) $(if $(UPSTREAM),-upstream $(UPSTREAM))
