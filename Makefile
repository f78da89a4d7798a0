# The two commands that work on a fresh machine: `make demo` and `make test`.
.PHONY: bootstrap demo test test-slow test-faults test-cluster lint bench

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/deployflow demo

test: bootstrap lint
	.venv/bin/python -m pytest -q -rfE --durations=15 -p no:cacheprovider

test-slow: bootstrap
	.venv/bin/python -m pytest -q -p no:cacheprovider -m slow

# Real processes hurt on purpose (kill -9, SIGTERM, server restart, API and Prometheus faults); about 10 minutes.
test-faults: bootstrap
	.venv/bin/python -m pytest -q -p no:cacheprovider -m faults tests/faults -rfE

# End to end against the cluster KUBECONFIG points at (never the simulator): see docs/real-cluster.md.
test-cluster: bootstrap
	.venv/bin/python -m pytest -q -rfEs -p no:cacheprovider -m cluster tests/cluster

lint: bootstrap
	.venv/bin/ruff check deployflow workflows activities worker.py tests bench
	.venv/bin/mypy deployflow workflows activities worker.py

bench: bootstrap
	@for b in bench/*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done
