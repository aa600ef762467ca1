# make demo: install into .venv and render the bundled example.  make test: install and run the tests
# but the long ones (make test-all: every test; make test-fast: the ones not marked slow).  The markers
# come from each test's measured time in tests/durations.json (make durations refreshes it).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hires-installed

.PHONY: install demo test test-long test-all test-fast durations gallery clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	# the CPU build of torch; an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e ".[test,distributed,serve]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	mkdir -p out
	$(BIN)/hires render hires/data/chelsea.png --style hires/data/vangogh_starry_night_1889.jpg \
		--size 1280x852 --fast-size 640 --preset demo --overwrite -o out/chelsea-starry-night.png
	@echo "demo written to out/chelsea-starry-night.png"

# the engine's numerical claims (tiled equals whole, kernels against float64, the networks' outputs)
# must hold on both of torch's CPU float paths: run them again restricted to AVX2 (no AVX-512, no bf16);
# the seam tests (a measure of the look, 40 s) and the style regions' gradients (the same arithmetic
# as the whole frame's, per region: 25 s) run once, to keep the suite under 10 minutes; so do the quick
# twins of the long tests (their claims are the long ones', which make test-long runs on both paths)
NUMERICAL := tests/test_gradient.py tests/test_kernels.py tests/test_losses.py tests/test_tiled.py tests/test_magenta.py \
	-k "not no_seams_along_tile_boundaries and not style_regions and not _quick"
AVX2 := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2

# (on a CPU whose torch already runs at AVX2, the first run was the AVX2 path: the second is skipped)
NATIVE_AVX2 := $(BIN)/python -c "import sys, torch; sys.exit(torch.backends.cpu.get_cpu_capability() not in ('AVX2', 'DEFAULT'))"

# $(call suite,EXPR): the tests but those the pytest -m expression EXPR leaves out (empty: every test),
# then the numerical ones again restricted to AVX2
define suite
	$(BIN)/python -m pytest -q $(if $(1),-m "$(1)")
	@if $(NATIVE_AVX2); then echo "torch runs at AVX2 on this CPU already: the AVX2 pass was the run above"; \
	else $(AVX2) $(BIN)/python -m pytest -q -p no:cacheprovider $(if $(1),-m "$(1)") tests/test_avx2.py $(NUMERICAL); fi
endef

# the suite under 10 minutes on 2 cores: every test but those of 8 s or more (about half the time),
# and the studio's page driven in a real browser whatever its time
test: install
	$(call suite,not long or browser)

# the long tests alone (seams, measured peaks, kill -9 resumes at size), each of which has a quick twin
# in make test (tests/twins.py): CI runs make test, then this
test-long: install
	$(call suite,long and not browser)

# every test, the long ones too: about 16 min on 2 cores
test-all: install
	$(call suite,)

# the inner loop: everything not marked slow, in about a minute
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# each test's measured time, the markers' source (run alone: the machine's load moves the times)
durations: install
	$(BIN)/python -m pytest -q --record-durations

gallery: install
	$(BIN)/python benchmarks/gallery.py

clean:
	rm -rf $(VENV) out .pytest_cache
