# Makefile — builds libkiln.so, the kiln CLI, the C tests, examples, sanitizer and fuzz builds.
#   make            library + CLI          make test       every test (C, then Python if any)
#   make examples   examples/c             make asan-test  tests under ASan + UBSan
#   make fuzz       parser fuzz target (clang libFuzzer); FUZZ_SECONDS=60 make fuzz-run
CC      ?= cc
BUILD   ?= build
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CPPFLAGS := -Iinclude -Isrc -D_POSIX_C_SOURCE=200809L
ALL_CFLAGS = -std=c11 -fPIC $(WARN) $(CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := -lm -ldl -lpthread

LIB_SRC   := $(sort $(wildcard src/core/*.c src/ir/*.c src/ops/*.c src/grad/*.c src/passes/*.c src/runtime/*.c src/compiler/*.c src/dialects/*.c src/codegen/*.c))
CLI_SRC   := $(wildcard src/cli/*.c)
TEST_SRC  := $(sort $(wildcard tests/c/*.c))
EX_SRC    := $(wildcard examples/c/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/%.o)

# make test-vm: the same suites with every compiled function checked against the interpreter
.PHONY: all test test-c test-tutorial test-python examples asan-test fuzz fuzz-run fuzz-safetensors clean venv
all: $(BUILD)/libkiln.so $(BUILD)/libkiln.a $(BUILD)/kiln

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libkiln.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libkiln.so: $(LIB_OBJ)
	$(CC) -shared $(ALL_CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/kiln: $(CLI_OBJ) $(BUILD)/libkiln.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/test_kiln: $(TEST_OBJ) $(BUILD)/libkiln.a
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# The tutorial at the top of kiln.h must compile and print what it says.
$(BUILD)/tutorial.c: include/kiln.h
	@mkdir -p $(BUILD)
	sed -n '/BEGIN TUTORIAL/,/END TUTORIAL/p' $< | sed '1d;$$d' | sed 's/^ \* \{0,1\}//' > $@

$(BUILD)/tutorial: $(BUILD)/tutorial.c $(BUILD)/libkiln.a
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)

test-tutorial: $(BUILD)/tutorial
	$(BUILD)/tutorial | tail -n 1 | grep -qx '6 15' && echo "tutorial in kiln.h: ok"

test-c: $(BUILD)/test_kiln $(BUILD)/kiln
	KILN_CLI=$(BUILD)/kiln $(BUILD)/test_kiln

test: all examples test-tutorial test-c
	$(MAKE) test-python

# Python: .venv from requirements.txt (reinstalled when that changes), then the package's tests.
PYTHON ?= python3
venv: .venv/requirements.stamp
.venv/requirements.stamp: requirements.txt
	$(PYTHON) -m venv .venv
	.venv/bin/pip install -q -r requirements.txt
	touch $@

test-python: .venv/requirements.stamp $(BUILD)/libkiln.so
	KILN_LIB=$(abspath $(BUILD)/libkiln.so) .venv/bin/python -m pytest tests/python -q

# Every test again with the VM checked against the interpreter: KILN_VM_CHECK=1 makes each
# kiln_function_run also compile the function and compare the program's results.
.PHONY: test-vm
test-vm: $(BUILD)/test_kiln $(BUILD)/kiln .venv/requirements.stamp
	KILN_VM_CHECK=1 KILN_CLI=$(BUILD)/kiln $(BUILD)/test_kiln
	KILN_VM_CHECK=1 KILN_LIB=$(abspath $(BUILD)/libkiln.so) .venv/bin/python -m pytest tests/python -q

examples: $(EX_SRC:examples/c/%.c=$(BUILD)/examples/%)
$(BUILD)/examples/%: examples/c/%.c $(BUILD)/libkiln.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)

# Micro-benchmark of the library dialects against the reference kernels (bench/dialects.c).
.PHONY: bench-dialects
bench-dialects: $(BUILD)/bench_dialects
	$(BUILD)/bench_dialects
$(BUILD)/bench_dialects: bench/dialects.c $(BUILD)/libkiln.a
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)

asan-test:
	$(MAKE) BUILD=build-asan CC=clang CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" test-c

fuzz: build-fuzz/fuzz_parser
build-fuzz/fuzz_parser: tests/fuzz/fuzz_parser.c $(LIB_SRC)
	@mkdir -p build-fuzz
	clang $(CPPFLAGS) -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined $^ -o $@ -lm -ldl -lpthread

FUZZ_SECONDS ?= 60
fuzz-run: build-fuzz/fuzz_parser
	@mkdir -p build-fuzz/corpus
	build-fuzz/fuzz_parser -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 build-fuzz/corpus tests/fuzz/corpus

# The .safetensors reader under libFuzzer: FUZZ_SECONDS=60 make fuzz-safetensors
fuzz-safetensors: build-fuzz/fuzz_safetensors
	@mkdir -p build-fuzz/corpus-safetensors
	build-fuzz/fuzz_safetensors -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 build-fuzz/corpus-safetensors
build-fuzz/fuzz_safetensors: tests/fuzz/fuzz_safetensors.c $(LIB_SRC)
	@mkdir -p build-fuzz
	clang $(CPPFLAGS) -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined $^ -o $@ -lm -ldl -lpthread

# `make setup` on a fresh Debian: installs what is missing (apt-get, through sudo unless root:
# build tools, Python's venv, the Fashion-MNIST data), builds, and creates .venv.
# `make train` then trains LeNet-5 on Fashion-MNIST (the main job; TRAIN_ARGS passes options,
# e.g. TRAIN_ARGS="--epochs 2 --restart"). `make demo` runs the C examples.
SETUP_PKGS := build-essential clang libclang-rt-14-dev python3-venv dataset-fashion-mnist libopenblas-dev libdnnl-dev
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
TRAIN_ARGS ?=
.PHONY: setup demo train
setup:
	@if command -v apt-get >/dev/null 2>&1 && ! dpkg -s $(SETUP_PKGS) >/dev/null 2>&1; then \
	    echo "installing $(SETUP_PKGS)"; \
	    $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SETUP_PKGS); fi
	$(MAKE) all venv

train: setup
	KILN_LIB=$(abspath $(BUILD)/libkiln.so) .venv/bin/python examples/python/fashion_mnist.py $(TRAIN_ARGS)

demo: all examples
	$(BUILD)/examples/mlp
	$(BUILD)/examples/control_flow

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
