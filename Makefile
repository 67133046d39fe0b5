# apicall: make help lists the targets.
GO        ?= go
BIN       ?= bin/apicall
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
CONFIG    ?= config/example.yaml
FUZZTIME  ?= 30s
SOAKLOG   ?= bin/soak.log

.PHONY: help build run demo test test-short bench soak soak-table fuzz lint tidy clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/apicall
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/apicall

run: build ## run apicall on the embedded broker with config/example.yaml, a receiver printing calls, and one sample event (Ctrl-C stops)
	@trap 'kill $$(jobs -p) 2>/dev/null; wait' INT TERM EXIT; \
	$(BIN) receive --listen 127.0.0.1:8080 & \
	$(BIN) run --config $(CONFIG) --log-format text & \
	$(BIN) produce --brokers 127.0.0.1:9092 --topic user-events --key user.id --wait 60s < config/testdata/fixture-event.json && \
	echo ">> published config/testdata/fixture-event.json to user-events; the call prints below. Publish more with:"; \
	echo ">>   $(BIN) produce --brokers 127.0.0.1:9092 --topic user-events --key user.id < config/testdata/fixture-event.json"; \
	wait

test: ## the test suite, with the race detector (what CI runs); the dispatcher's tests run twice, the second time through net/http instead of the fast path
	$(GO) test -race -count=1 -timeout 20m ./...
	APICALL_DISPATCH_NET_HTTP=1 $(GO) test -race -count=1 -timeout 5m ./dispatcher/

test-short: ## the suite without the race detector, faster
	$(GO) test -count=1 -timeout 20m ./...

bench: build ## end-to-end throughput benchmark (apicall vs a bare-loop baseline) plus the hot-path micro benchmarks
	$(GO) test -run '^$$' -bench . -benchmem ./config/ ./schemas/ ./dispatcher/ ./consumer/
	$(GO) run ./cmd/apicall-bench --apicall-bin $(BIN) $(BENCHFLAGS)

soak: ## long reliability scenarios (APICALL_SOAK=1), a table of them, then every fuzz target for 1m (not run in CI)
	@mkdir -p $(dir $(SOAKLOG))
	@{ APICALL_SOAK=1 $(GO) test -race -count=1 -timeout 80m -run 'Soak|Reliability' -v ./... 2>&1; echo $$? > $(SOAKLOG).rc; } | tee $(SOAKLOG)
	@$(MAKE) --no-print-directory soak-table
	@test "$$(cat $(SOAKLOG).rc)" = 0 || { echo "soak: scenarios failed (log: $(SOAKLOG))"; exit 1; }
	$(MAKE) fuzz FUZZTIME=1m
	@$(MAKE) --no-print-directory soak-table

# soak-table prints the scenarios' "SOAK| scenario | events | delivered |
# duplicates | dead-lettered | lost | time" lines of the last soak as a table.
soak-table:
	@printf '\n| scenario | events | delivered | duplicates | dead-lettered | lost | time |\n|---|---:|---:|---:|---:|---:|---:|\n'
	@grep -o 'SOAK|.*' $(SOAKLOG) | sed -e 's/^SOAK|/|/' -e 's/$$/ |/'

fuzz: ## run every fuzz target for FUZZTIME each
	@for pkg in ./config ./schemas ./consumer; do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

lint: ## go vet, gofmt and staticcheck (when installed)
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	@if command -v staticcheck >/dev/null; then staticcheck ./...; else echo "staticcheck not installed: skipped"; fi

tidy: ## fail when go.mod/go.sum are not tidy
	$(GO) mod tidy -diff

clean: ## remove build output and the embedded broker's data
	rm -rf bin .apicall
