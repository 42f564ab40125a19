# bonemets: the two commands of the README, and their parts.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: serve test test-distributed install install-dev model-repository lint typecheck bench load soak demo-model clean system-packages docs-images

# The gateway binds BONEMETS_HOST:BONEMETS_PORT (default 127.0.0.1:8000), e.g.
# `make serve BONEMETS_PORT=9000`; a .env file works too. Its first start prints a
# development API key, once (more with `.venv/bin/bonemets keys create --client NAME`).
serve: install model-repository  ## set up and start Triton + the gateway on 127.0.0.1:8000 (first start: prints an API key)
	$(BIN)/bonemets serve

# The unit and API tiers mostly wait (on servers, sockets, subprocesses): two pytest workers
# (pytest-xdist) take them in about 60% of the time on 2 cores; each test starts its own
# servers on free ports in its own folder, so they share nothing. The integration tier runs
# alone: its tests kill and time processes (leases, SIGKILL, SIGTERM).
WORKERS ?= 2
test: install-dev  ## set up and run every test: unit, API, integration, then the API tier on PostgreSQL + S3
	$(BIN)/python -m pytest tests/unit tests/api -n $(WORKERS) $(PYTEST_ARGS)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-distributed

# The API tier again on the distributed seams: the job database in a real PostgreSQL
# (Debian's, a cluster of the tests' own) and every object of every study in a real S3
# server (SeaweedFS's weed, from the test extra), both started by the tests on free ports.
# Left out there: what neither seam changes, already run once on SQLite and disk (who is
# calling by token, the docs page; how each real file of the corpus is read, file by file:
# the same bytes through the same reader whatever keeps them). Every test that stores,
# claims, lists, delivers or deletes a study, or checks an API key (kept in the job
# database), runs on both.
BACKEND_NEUTRAL = tests/api/test_oidc.py \
  tests/api/test_docs_page.py tests/api/test_corpus.py tests/api/test_dicomweb_corpus.py \
  tests/api/test_image_bounds.py \
  tests/api/test_dimse.py::test_real_ct_in_its_own_transfer_syntax_is_answered_as_the_reader_reads_it \
  tests/api/test_reports.py::test_a_corpus_series
test-distributed: install-dev  ## the API tier on PostgreSQL and S3 (BONEMETS_TEST_DATABASE=postgres BONEMETS_TEST_STORAGE=s3)
	BONEMETS_TEST_DATABASE=postgres BONEMETS_TEST_STORAGE=s3 $(BIN)/python -m pytest tests/api \
	  -n $(WORKERS) $(addprefix --deselect ,$(BACKEND_NEUTRAL)) $(PYTEST_ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.serving: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[train,test]"
	touch $@ $(VENV)/.serving

# Debian packages the tests start for real: dciodvfy (dicom3tools) checks every SEG and SR;
# Orthanc with its DICOMweb plugin is the PACS of the round-trip tests; chromium opens the
# viewer page; Prometheus (and promtool) answers the dashboard's queries and the alert
# rules. Installed as root where apt-get exists; elsewhere those tests skip, saying so.
SYSTEM_PACKAGES := dicom3tools orthanc orthanc-dicomweb postgresql chromium fonts-liberation \
  prometheus
system-packages:  ## install dciodvfy, Orthanc, PostgreSQL, chromium and Prometheus for the tests that start them (Debian/Ubuntu, as root)
	@command -v dciodvfy >/dev/null && command -v Orthanc >/dev/null \
	  && test -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so \
	  && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v chromium >/dev/null \
	  && command -v promtool >/dev/null && exit 0; \
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; } \
	  || echo "system-packages: apt-get failed; the dciodvfy and Orthanc tests will be skipped"; \
	else echo "system-packages: no apt-get as root here; the dciodvfy and Orthanc tests will be skipped"; fi
	@# Debian's package starts its own Orthanc service where it can; the tests start theirs.
	@-command -v service >/dev/null && service orthanc stop >/dev/null 2>&1 || true

install: $(VENV)/.serving  ## the serving install: no torch
install-dev: $(VENV)/.dev  ## everything: training, export, tests

# The demo model ships in model_repository/; without it, it is rebuilt (from models/demo.pt
# when that checkpoint is here, else by retraining: about 45 minutes on 2 cores).
model-repository:
	@test -f model_repository/bonemets/1/model.onnx -a -f model_repository/bonemets/config.pbtxt \
	  || { test -f models/demo.pt || $(MAKE) demo-model; \
	       $(MAKE) install-dev && $(BIN)/bonemets export onnx models/demo.pt --repository model_repository; }

demo-model: install-dev  ## retrain the shipped demo model from phantoms (about 45 min on 2 cores, 16 GB of memory)
	$(BIN)/bonemets train --config export/configs/demo.json --out models/demo.pt
	$(BIN)/bonemets export onnx models/demo.pt --repository model_repository

bench: install-dev  ## benchmarks: prints a table, writes JSON, updates docs/benchmarks.md
	$(BIN)/bonemets bench

# Locust users against a running gateway (`make serve` in another shell), e.g.
# `make load USERS=20 DURATION=5m URL=http://127.0.0.1:8000 KEY=...`; without KEY, one is
# made for the client load-test in the gateway's data directory (BONEMETS_DATA_DIR, data).
USERS ?= 10
DURATION ?= 2m
URL ?= http://127.0.0.1:8000
KEY ?=
load: install-dev  ## load-test a running gateway with locust: CSV and report.html in load-report/
	$(BIN)/bonemets load --users $(USERS) --duration $(DURATION) --url $(URL) \
	  $(if $(KEY),--key $(KEY)) --out load-report

soak: install-dev model-repository  ## 20 uploaders for 5 minutes on the local service: errors, p95, memory slope, files left
	$(BIN)/bonemets soak --update-docs docs/benchmarks.md

docs-images: install-dev  ## the README's pictures: the viewer (on the shipped model) and the dashboard, taken by their tests
	BONEMETS_SCREENSHOTS=docs/images $(BIN)/python -m pytest -q tests/integration/test_readme.py \
	  tests/integration/test_monitoring.py

lint: install-dev
	$(BIN)/ruff check api export tests
	$(BIN)/mypy api export

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
