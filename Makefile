# Shortcuts; ./test.sh is the test command.
.PHONY: test bench fuzz

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
