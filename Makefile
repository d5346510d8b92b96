# recforge developer entry points. Every target creates .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# MovieLens copies: RECFORGE_DATA_DIR if set, else ../shared/data when it exists (our dev machines),
# else the user cache / a verified download (see README).
ifeq ($(origin RECFORGE_DATA_DIR), undefined)
  ifneq ($(wildcard ../shared/data/ml-100k),)
    export RECFORGE_DATA_DIR := $(abspath ../shared/data)
  endif
endif

.PHONY: venv demo demo-serve test test-gpu mutate lint typecheck pytest bench bench-tables clean

venv: $(STAMP)

# torch is pinned to the CPU wheel for dev/CI; the package itself declares torch>=2.4.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,peers]"
	touch $(STAMP)

# The demo also trains the best ranking model of the benchmark (recency-weighted EASE, seconds)
# and prints its top-5 with a "because" line each; `make demo-serve` serves it with the web page.
DEMO_RANKER := configs/ml-100k/temporal-user-80-20/ease-recency.toml

demo: $(STAMP)
	$(BIN)/recforge train --model biased_mf --data ml-100k --split random:0.2 --out runs/demo
	$(BIN)/recforge recommend runs/demo --user 1 -k 10
	$(BIN)/recforge train --model ease --config $(DEMO_RANKER) --data ml-100k \
		--split temporal-user:0.2 --out runs/demo-ease
	$(BIN)/recforge recommend runs/demo-ease --user 1 -k 5 --explain
	@echo "Serve it (API + web page at http://127.0.0.1:8000/): make demo-serve"

demo-serve: $(STAMP)
	test -d runs/demo-ease || $(MAKE) demo
	$(BIN)/recforge serve runs/demo-ease --port 8000

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# -ra prints the reason of every skip (and xfail/failure) at the end; CUDA tests are deselected
# (pyproject addopts), so the skips that remain each mean something. The peers extra is installed
# above, and RECFORGE_REQUIRE_PEERS turns a missing peer library into a failure instead of a skip.
pytest: $(STAMP)
	RECFORGE_REQUIRE_PEERS=1 $(BIN)/pytest -q -ra

# The CUDA tests only (on a GPU machine): every neural model's contract on CUDA, bf16 autocast.
test-gpu: $(STAMP)
	$(BIN)/pytest -q -ra -m gpu tests/gpu tests/train

test: lint typecheck pytest

# Mutation testing of the core modules ([tool.mutmut] in pyproject.toml; the report is
# docs/quality/mutation.md). Slow (hours for all seven modules on 2 cores), so not part of
# `make test`; MUTATE picks mutants by name, e.g. make mutate MUTATE='recforge.eval.metrics*'.
MUTATE ?=
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[mutate]"
	RECFORGE_MUTATION=1 nice -n 10 $(BIN)/mutmut run $(MUTATE)
	$(BIN)/mutmut results

# `make bench` reruns the committed `recforge benchmark` tables (docs/benchmarks.md; ~1 h on 2
# cores, most of it the blend's five folds). Tuned configs come from configs/<dataset>/<protocol>/.
BENCH_RATING := global_mean,biases,biased_mf,mf,mf:n_factors=5,y_range="none",embedding_net,ncf-gmf,ncf-mlp,ncf-neumf,two_tower,autorec,autorec:variant="user",item_knn:similarity="pearson_baseline",user_knn:similarity="pearson_baseline",als:objective="explicit",content,blend
RANKING_TAIL := mult_dae,mf:loss="bce",epochs=20,lr=0.02,weight_decay=0.0,ncf:loss="bce",two_tower:loss="softmax",content:feedback="implicit"
RANKING_HEAD := popularity,ease,ease-recency,als,item_knn,item_knn-recency,user_knn:feedback="implicit",mult_vae
# ml-latest-small has no recency Mult-VAE row (recency did not help it on validation).
BENCH_RANKING := $(RANKING_HEAD),mult_vae-recency,$(RANKING_TAIL)
# ml-latest-small: two_tower and mult_vae read their tuned files (recforge tune, 20 trials).
BENCH_RANKING_MLS := $(RANKING_HEAD),$(subst two_tower:loss="softmax",two_tower,$(RANKING_TAIL))
BENCH_SAMPLED := popularity,ease,als,item_knn:feedback="implicit",mult_vae,mult_dae,mf:loss="bce",epochs=20,lr=0.02,weight_decay=0.0,ncf:loss="bce",two_tower:loss="softmax"
BENCH := OMP_NUM_THREADS=1 $(BIN)/recforge benchmark --threads 1

bench: $(STAMP)
	$(BENCH) --suite rating --data ml-100k --models '$(BENCH_RATING)' \
		--out docs/benchmarks/suite/ml-100k-rating
	$(BENCH) --suite ranking --data ml-100k --protocols temporal-user-80-20 \
		--models '$(BENCH_RANKING)' --out docs/benchmarks/suite/ml-100k-temporal
	$(BENCH) --suite ranking --data ml-latest-small --protocols temporal-user-80-20 \
		--models '$(BENCH_RANKING_MLS)' --out docs/benchmarks/suite/ml-latest-small-temporal
	$(BENCH) --suite ranking --data ml-100k --protocols ncf-loo,heldout-users \
		--models '$(BENCH_SAMPLED)' --out docs/benchmarks/suite/ml-100k-loo-heldout

# The session-1 tables (fold-in latency columns, the model variants of docs/benchmarks/ml100k_*.md).
RATING_MODELS := global_mean biases biased_mf mf 'mf:n_factors=5,y_range="none"' embedding_net \
	'embedding_net:n_factors=150,hidden=[100,200,300],dropouts=[0.25,0.5]' \
	ncf:variant=gmf ncf:variant=mlp ncf:variant=neumf ncf:variant=neumf,pretrain=true two_tower \
	autorec autorec:variant=user 'item_knn:similarity="pearson_baseline"' \
	'user_knn:similarity="pearson_baseline"' 'als:objective="explicit"' content
RANKING_MODELS := popularity ease als 'item_knn:{"feedback": "implicit"}' \
	'user_knn:{"feedback": "implicit"}' mult_vae mult_dae \
	'mf:{"loss": "bce", "epochs": 20, "lr": 0.02, "weight_decay": 0.0}' 'ncf:{"loss": "bce"}' \
	'two_tower:{"loss": "softmax"}' 'content:{"feedback": "implicit"}'

bench-tables: $(STAMP)
	$(BIN)/python benchmarks/ml100k_folds.py $(RATING_MODELS) --threads 1 --out docs/benchmarks/ml100k_folds
	$(BIN)/python benchmarks/ml100k_ranking.py --models $(RANKING_MODELS) --threads 1 --out docs/benchmarks/ml100k_ranking

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
