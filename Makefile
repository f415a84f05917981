# SPDX-License-Identifier: GPL-2.0-only
# kpgen: generate, build and boot-test kpatch-style live patch modules.
# `make help` lists the targets.

PYTHON ?= python3
PYTEST ?= $(PYTHON) -m pytest
# The kernel kmod/ holds the generator's output for: the first installed kernel of
# gen/kpgen/data/kernels.toml (point releases compared as numbers), whatever kernel this
# machine runs. kpgen decides (kernel.matrix_kdir), so that the Makefile and the tests agree.
KDIR_DEFAULT = $(shell $(PYTHON) -c 'from kpgen import kernel; print(kernel.matrix_kdir())' 2>/dev/null)

.PHONY: help provision provisioned install generate check-generated golden build test test-unit \
	test-vm test-kpatch-suite test-harness test-diffs diff-speed container-test docker-test lint boot-test stress bench demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

provision: ## install everything (apt: kernels, QEMU, build tools; pip: kpgen) - as root
	bash ci/provision.sh

provisioned: # provision first when anything is missing (test and demo depend on it)
	@bash ci/provision.sh --if-needed

install: ## install the kpgen Python package only (editable, with test extras)
	$(PYTHON) -m pip install --quiet --break-system-packages -e '.[test]'

generate: ## regenerate kmod/ for the matrix's first kernel (6.1), replacing what is there
	@test -n "$(KDIR_DEFAULT)" || { echo "no kernel headers or no kpgen: run make provision" >&2; exit 1; }
	kpgen generate --kdir $(KDIR_DEFAULT) -o kmod --force

check-generated: ## fail if regenerating kmod/ would change it
	$(PYTEST) -q tests/unit/test_render.py -k kmod_matches

golden: ## refresh the golden files of tests/golden (review the diff!)
	$(PYTHON) tests/golden/update.py

build: ## build everything for every kernel of gen/kpgen/data/kernels.toml, with checks
	$(PYTEST) -v -m kbuild

test: provisioned ## every commit's tests: unit, golden, regeneration, Kbuild, container, one QEMU boot per kernel
	$(PYTEST) -v -m "not kpatch_suite and not harness" --junitxml=build/reports/junit.xml

test-kpatch-suite: provisioned ## kpatch's integration suite: built for 6.1 and 6.12, both backends, loaded in their boots
	$(PYTEST) -v -m kpatch_suite

test-harness: provisioned ## the boot harness's own tests (a guest made to hang is stopped in time)
	$(PYTEST) -v -m harness

test-unit: ## the tests that need no kernel build, boot or container
	$(PYTEST) -v -m "not kbuild and not vm and not container"

test-diffs: ## the diff path alone: its unit tests, the corpus and kpatch's suite built per kernel (no boot)
	$(PYTEST) -v tests/unit/test_diff*.py tests/unit/test_extract.py tests/unit/test_objdiff.py \
		tests/kbuild/test_diff_corpus.py tests/kbuild/test_kpatch_integration.py

diff-speed: ## kpgen diff --build of each corpus case, one at a time, per kernel (build/diff-speed)
	for kdir in $$($(PYTHON) -c 'from kpgen.harness import diffcases; print(*diffcases.corpus_kdirs("tests/diffs"))'); do \
		$(PYTHON) -m kpgen.harness.diffcases tests/diffs build/diff-speed/$$(basename $$(dirname $$kdir)) $$kdir || exit 1; \
	done

test-vm: ## the boot tests only
	$(PYTEST) -v -m vm

container-test: ## build the Dockerfile with podman (no daemon), run make build and test-unit in it - as root
	bash ci/container.sh --engine podman

docker-test: ## the same with a Docker engine
	bash ci/container.sh --engine docker

# the tracked files that start with a shell's #! line
SHELL_SCRIPTS = $(shell git ls-files -z | xargs -0 grep -lE '^\#!.*\<(ba|da|k)?sh\>' 2>/dev/null)

lint: ## ruff, mypy, shellcheck, hadolint: what tests/unit/test_static_checks.py runs
	@status=0; \
	$(PYTHON) -m ruff check . || status=1; \
	$(PYTHON) -m mypy || status=1; \
	shellcheck $(SHELL_SCRIPTS) || status=1; \
	hadolint Dockerfile || status=1; \
	exit $$status

boot-test: ## build and boot each kernel once, printing the guest's TAP
	kpgen boot-test

stress: provisioned ## the boot tests with a longer stress scenario (STRESS_CYCLES, default 1000)
	kpgen boot-test --stress-cycles $(or $(STRESS_CYCLES),1000) --timeout 7200

bench: provisioned ## benchmarks against upstream livepatch, five boots per kernel (build/bench)
	kpgen bench

demo: provisioned ## generate, build, boot: patch a function, stack a second patch, unpatch
	bash ci/demo.sh

clean: ## remove build output
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
