# Shortcuts; ./test.sh is the test command.
.PHONY: test bench fuzz attack

test:
	./test.sh

# Observer on/off, the log path against a bare sink, and the hot-path
# microbenchmarks, in one run; prints markdown tables for the README.
bench:
	go run ./cmd/wampload bench

# The fuzz targets, each for FUZZTIME (default 10m).
FUZZTIME ?= 10m
fuzz:
	./fuzz.sh $(FUZZTIME)

# The hostile-client attacks of issue 10 at the issue's scale, each against
# a fresh router process with a normal client alongside; prints a markdown
# table. SCALE=small runs them at about 1/100 in about a minute.
SCALE ?= full
attack:
	go run ./cmd/wampload attack -scale $(SCALE)
