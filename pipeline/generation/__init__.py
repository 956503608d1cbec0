"""Generation backends behind one interface: vLLM (its own virtualenv) and transformers.

`job.py` is the contract: a `GenerationJob` (model, requests, sampling, engine settings)
and the `Engine` protocol both engines implement. Both run the same loop
(`runner.run_job`): render each request's messages with the project's chat template,
generate, and write finished results in shards. This package imports only the standard
library and `pipeline.io` at module level, because the vLLM worker imports it inside the
vLLM environment, which has no axolotl.
"""
