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

LIB_SRC   := $(sort $(wildcard src/core/*.c src/ir/*.c src/ops/*.c src/grad/*.c src/passes/*.c src/runtime/*.c src/compiler/*.c src/dialects/*.c src/codegen/*.c src/backend/*.c))
CLI_SRC   := $(wildcard src/cli/*.c)
TEST_SRC  := $(sort $(wildcard tests/c/*.c))
EX_SRC    := $(wildcard examples/c/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
# kiln's own CUDA kernels (each src/dialects/X.cu) are built into the library as a C string kiln_X_src
GEN_SRC   := $(patsubst src/dialects/%.cu,$(BUILD)/gen/%_src.c,$(sort $(wildcard src/dialects/*.cu)))
LIB_OBJ   += $(GEN_SRC:.c=.o)
CLI_OBJ   := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ  := $(TEST_SRC:%.c=$(BUILD)/%.o)

# The CUDA backend, libkiln_cuda.so (src/cuda/), is built wherever the toolkit's cuda.h is found
# (CUDA_HOME); NVRTC's and cuBLASLt's headers and libraries come from NVIDIA's wheels
# (NVIDIA_PREFIX: the venv's nvidia/cu13 unless given; cuDNN in CUDNN_PREFIX, beside it). It
# links no CUDA library: it loads them
# at run time, so it builds (and its NVRTC tests run) on machines without a GPU.
CUDA_HOME     ?= $(firstword $(wildcard /usr/local/cuda /usr/local/cuda-1*))
NVIDIA_PREFIX ?= $(abspath .venv/lib/python3.11/site-packages/nvidia/cu13)
CUDNN_PREFIX  ?= $(abspath $(NVIDIA_PREFIX)/../cudnn)
CUDA_SRC      := $(sort $(wildcard src/cuda/*.c))
CUDA_LIB      := $(if $(CUDA_HOME),$(BUILD)/libkiln_cuda.so)
CUDA_ENV      := KILN_CUDA_LIBS=$(NVIDIA_PREFIX)/lib:$(CUDNN_PREFIX)/lib

# make test-vm: the same suites with every compiled function checked against the interpreter
.PHONY: all test test-c test-tutorial test-python examples asan-test fuzz fuzz-run fuzz-safetensors clean venv cuda
all: $(BUILD)/libkiln.so $(BUILD)/libkiln.a $(BUILD)/kiln $(CUDA_LIB)
cuda: $(BUILD)/libkiln_cuda.so

# the wheels come from the venv unless NVIDIA_PREFIX names another place (the GPU machine's)
CUDA_HEADERS  := $(if $(filter $(abspath .venv)/%,$(NVIDIA_PREFIX)),.venv/requirements.stamp)
$(BUILD)/src/cuda/%.o: src/cuda/%.c | $(CUDA_HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -isystem $(CUDA_HOME)/include -isystem $(NVIDIA_PREFIX)/include -isystem $(CUDNN_PREFIX)/include $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libkiln_cuda.so: $(CUDA_SRC:%.c=$(BUILD)/%.o)
	$(CC) -shared $(ALL_CFLAGS) $(LDFLAGS) $^ -o $@ -ldl -lpthread

# one line of C string per source line: backslashes and quotes escaped (NVRTC compiles the string)
$(GEN_SRC): $(BUILD)/gen/%_src.c: src/dialects/%.cu
	@mkdir -p $(dir $@)
	{ echo '/* generated from $< by the Makefile */'; echo 'const char kiln_$*_src[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$$/\\n"/' $<; echo ';'; } > $@

$(GEN_SRC:.c=.o): %.o: %.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

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

test-c: $(BUILD)/test_kiln $(BUILD)/kiln $(CUDA_LIB)
	$(CUDA_ENV) KILN_CLI=$(BUILD)/kiln $(BUILD)/test_kiln

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
	$(CUDA_ENV) KILN_LIB=$(abspath $(BUILD)/libkiln.so) .venv/bin/python -m pytest tests/python -q

# Every test again with the VM checked against the interpreter: KILN_VM_CHECK=1 makes each
# kiln_function_run also compile the function and compare the program's results.
.PHONY: test-vm
test-vm: $(BUILD)/test_kiln $(BUILD)/kiln .venv/requirements.stamp $(CUDA_LIB)
	$(CUDA_ENV) KILN_VM_CHECK=1 KILN_CLI=$(BUILD)/kiln $(BUILD)/test_kiln
	$(CUDA_ENV) KILN_VM_CHECK=1 KILN_LIB=$(abspath $(BUILD)/libkiln.so) .venv/bin/python -m pytest tests/python -q

# On a GPU machine: every test again with each function the tests run also compiled for CUDA,
# run there and compared with the interpreter (TF32 off, so f32 products match). TEST_PYTHON:
# a Python with numpy, torch and pytest (the venv's by default).
TEST_PYTHON ?= .venv/bin/python
.PHONY: test-cuda
test-cuda: $(BUILD)/test_kiln $(BUILD)/kiln $(BUILD)/libkiln.so $(CUDA_LIB)
	$(CUDA_ENV) KILN_CUDA_TF32=0 KILN_VM_CHECK=1 KILN_VM_CHECK_DEVICE=cuda KILN_CLI=$(BUILD)/kiln $(BUILD)/test_kiln
	$(CUDA_ENV) KILN_CUDA_TF32=0 KILN_VM_CHECK=1 KILN_VM_CHECK_DEVICE=cuda KILN_LIB=$(abspath $(BUILD)/libkiln.so) \
	    $(TEST_PYTHON) -m pytest tests/python -q $(PYTEST_ARGS)

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
build-fuzz/fuzz_parser: tests/fuzz/fuzz_parser.c $(LIB_SRC) $(GEN_SRC)
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
build-fuzz/fuzz_safetensors: tests/fuzz/fuzz_safetensors.c $(LIB_SRC) $(GEN_SRC)
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
	$(CUDA_ENV) KILN_LIB=$(abspath $(BUILD)/libkiln.so) .venv/bin/python examples/python/fashion_mnist.py $(TRAIN_ARGS)

demo: all examples
	$(BUILD)/examples/mlp
	$(BUILD)/examples/control_flow

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(CUDA_SRC:%.c=$(BUILD)/%.d)
