# Entry points. Everything the project needs is installed by scripts/setup.sh (torch wheel venv)
# and cargo; venv and cargo target dir live under ~/.cache/nnunet-rs so clones share them.
SHELL := /bin/bash
ENV := source scripts/env.sh &&
BIN = $${CARGO_TARGET_DIR}/release/pipeline

.PHONY: setup build demo test test-slurm test-real bench clean-demo

setup:
	bash scripts/setup.sh

build: setup
	$(ENV) cargo build --release --workspace --bins

## The main job on the bundled synthetic demo dataset: synth -> full pipeline -> report.
demo: build
	$(ENV) bash scripts/demo.sh

## The test suite (what CI runs).
test: setup
	$(ENV) cargo build --release --workspace --bins && \
	  PIPELINE_BIN=$(BIN) cargo test --release --workspace -- --test-threads=2

## Real-data checks on ../shared/data/Task04_Hippocampus (longer; not in CI's default path).
test-real: build
	$(ENV) bash scripts/test-real.sh

## Every benchmark beside the peer (nnU-Net v2); writes bench/RESULTS.md.
bench: build
	$(ENV) bash bench/run.sh

clean-demo:
	rm -rf data/demo cache runs
