"""Post-processing of model outputs: parse final labels, clean and vet reasonings.

Pure standard library on purpose: this package is imported both by the main
toolkit and inside the separate vLLM virtualenv, which has nothing else.
"""
