# make demo: install into .venv and render the bundled example.  make test: install and run the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hires-installed

.PHONY: install demo test gallery clean

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

test: install
	$(BIN)/python -m pytest -q

gallery: install
	$(BIN)/python benchmarks/gallery.py

clean:
	rm -rf $(VENV) out .pytest_cache
