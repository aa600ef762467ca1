# make demo: install into .venv and render the bundled example.  make test: install and run the tests
# (make test-fast: the ones not marked slow).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hires-installed

.PHONY: install demo test test-fast gallery clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	# the CPU build of torch; an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e ".[test,distributed]"
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
# as the whole frame's, per region: 25 s) run once, to keep the suite under 10 minutes
NUMERICAL := tests/test_gradient.py tests/test_kernels.py tests/test_losses.py tests/test_tiled.py tests/test_magenta.py \
	-k "not no_seams_along_tile_boundaries and not style_regions"
AVX2 := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2

# (on a CPU whose torch already runs at AVX2, the first run was the AVX2 path: the second is skipped)
NATIVE_AVX2 := $(BIN)/python -c "import sys, torch; sys.exit(torch.backends.cpu.get_cpu_capability() not in ('AVX2', 'DEFAULT'))"

test: install
	$(BIN)/python -m pytest -q
	@if $(NATIVE_AVX2); then echo "torch runs at AVX2 on this CPU already: the AVX2 pass was the run above"; \
	else $(AVX2) $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_avx2.py $(NUMERICAL); fi

# the inner loop: everything not marked slow, in about a minute
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

gallery: install
	$(BIN)/python benchmarks/gallery.py

clean:
	rm -rf $(VENV) out .pytest_cache
