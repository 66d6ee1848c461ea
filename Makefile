# Thin aliases for dev.py (which needs only Python 3.11 and pip).
PY ?= python3

.PHONY: up setup test bench test-cluster portal clean
up:
	$(PY) dev.py up
setup:
	$(PY) dev.py setup
test:
	$(PY) dev.py test
bench:
	$(PY) dev.py bench $(N)
test-cluster:
	$(PY) dev.py test-cluster
portal:
	$(PY) dev.py portal
clean:
	rm -rf out data airflow-home bench-out .pytest_cache users.yaml portal-demo-users.txt
