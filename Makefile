# Chorus — the two commands: `make demo` and `make test` (plus `make bench`).
# Each first installs what is missing (system libraries via apt, only when absent), then builds.

SWIFT      ?= swift
CONFIG     ?= release
BUILD_FLAGS = -c $(CONFIG)
BIN         = $(shell $(SWIFT) build $(BUILD_FLAGS) --show-bin-path 2>/dev/null)/chorus
SUDO       := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: deps build serve test demo bench clean

## Install system packages (OpenBLAS, zstd, pkg-config) only when they are missing.
deps:
	@if ! command -v $(SWIFT) >/dev/null 2>&1; then \
	  echo "error: swift is not on PATH (install Swift 6 from swift.org first)" >&2; exit 1; fi
	@missing=""; \
	command -v pkg-config >/dev/null 2>&1 || missing="$$missing pkg-config"; \
	pkg-config --exists openblas 2>/dev/null || missing="$$missing libopenblas-dev"; \
	pkg-config --exists libzstd 2>/dev/null || missing="$$missing libzstd-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

## Release build of the chorus tool.
build: deps
	$(SWIFT) build $(BUILD_FLAGS) --product chorus

## `chorus serve`: the release build of chorus and of its HTTP server chorus-serve (swift-nio),
## kept out of `build` so that make demo does not compile swift-nio (docs/remote-teachers.md).
serve: build
	$(SWIFT) build $(BUILD_FLAGS) --product chorus-serve

## The test suite (debug build of the tests; numeric kernels are fast enough at test sizes).
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-swift-testing

## The end-to-end demo on the bundled teachers.
demo: build
	@bash scripts/demo.sh "$(BIN)"

## Throughput of the built-in shapes.
bench: build
	"$(BIN)" bench --shape qwen3-10m --json --teachers
	"$(BIN)" bench --shape qwen3-23m --json --teachers
	"$(BIN)" bench --shape qwen3-50m --json --cache

clean:
	rm -rf .build
