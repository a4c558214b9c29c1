# Conveniences over tasks.py (which needs only Python 3.11+).
.PHONY: setup run test test-fast
setup:
	python3 tasks.py setup
run:
	python3 tasks.py run
test:
	python3 tasks.py test
test-fast:
	python3 tasks.py test -m "not slow"
