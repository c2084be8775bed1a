# Chorus — the two commands: `make demo` and `make test` (plus `make bench`, `make install`).
# Each first installs what is missing (system libraries via apt, only when absent), then builds.

SWIFT      ?= swift
CONFIG     ?= release
BUILD_FLAGS = -c $(CONFIG)
# Release builds carry the git revision (chorus --version, run.json): scripts/build-revision.sh
# writes it into a generated source that only this flag compiles in (Sources/ChorusCore/Version.swift).
REVISION_FLAGS = -Xswiftc -DCHORUS_BUILD_REVISION
PREFIX     ?= /usr/local
BIN         = $(shell $(SWIFT) build $(BUILD_FLAGS) --show-bin-path 2>/dev/null)/chorus
SUDO       := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: deps browser build revision serve install test demo bench clean

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

## Debian's chromium for the browser tests of the HTML pages (ChorusReportTests), installed only
## when no chromium is on PATH (CHORUS_CHROMIUM names another browser binary). Where it cannot
## be installed (no apt, no root or sudo, no network) the tests that need it are skipped with a
## message; CHORUS_NO_BROWSER=1 skips the install.
browser:
	@if [ -n "$$CHORUS_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then :; \
	elif [ "$$CHORUS_NO_BROWSER" = "1" ]; then echo "CHORUS_NO_BROWSER=1: not installing chromium; the browser tests will be skipped"; \
	elif ! command -v apt-get >/dev/null 2>&1; then echo "no apt-get: cannot install chromium; the browser tests will be skipped"; \
	elif [ -n "$(SUDO)" ] && ! command -v sudo >/dev/null 2>&1; then echo "not root and no sudo: cannot install chromium; the browser tests will be skipped"; \
	else echo "installing: chromium (browser tests of the HTML report)"; \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium ) \
	    || echo "could not install chromium; the browser tests will be skipped"; \
	fi

## The git revision baked into the build (rewrites the generated source only when it changes).
revision:
	@echo "revision: $$(bash scripts/build-revision.sh)"

## Release build of the chorus tool.
build: deps revision
	$(SWIFT) build $(BUILD_FLAGS) $(REVISION_FLAGS) --product chorus

## `chorus serve`: the release build of chorus and of its HTTP server chorus-serve (swift-nio),
## kept out of `build` so that make demo does not compile swift-nio (docs/remote-teachers.md).
serve: build
	$(SWIFT) build $(BUILD_FLAGS) $(REVISION_FLAGS) --product chorus-serve

## Install the release binary into $(PREFIX)/bin (default /usr/local; DESTDIR is honoured), with
## chorus-serve beside it when it was built (`make serve install`).
install: build
	install -d "$(DESTDIR)$(PREFIX)/bin"
	install -m 755 "$(BIN)" "$(DESTDIR)$(PREFIX)/bin/chorus"
	@if [ -x "$(dir $(BIN))chorus-serve" ]; then \
	  install -m 755 "$(dir $(BIN))chorus-serve" "$(DESTDIR)$(PREFIX)/bin/chorus-serve"; \
	  echo "installed $(DESTDIR)$(PREFIX)/bin/chorus and chorus-serve"; \
	else echo "installed $(DESTDIR)$(PREFIX)/bin/chorus (run make serve install to add chorus-serve)"; fi

## The test suite (debug build of the tests; numeric kernels are fast enough at test sizes).
test: deps browser
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-swift-testing

## The end-to-end demo on the bundled teachers.
demo: build
	@bash scripts/demo.sh "$(BIN)"

## Rebuild the bundled teacher ladder teachers/ from scratch (scripts/make_teachers.sh, ~10 min).
teachers: build
	@bash scripts/make_teachers.sh "$(BIN)"

## Throughput of the built-in shapes.
bench: build
	"$(BIN)" bench --shape qwen3-10m --json --teachers
	"$(BIN)" bench --shape qwen3-23m --json --teachers
	"$(BIN)" bench --shape qwen3-50m --json --cache

clean:
	rm -rf .build
