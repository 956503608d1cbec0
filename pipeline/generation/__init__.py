"""Generation backends behind one interface: vLLM (its own virtualenv) and transformers.

Both run the same job (`runner.run_job`): render each request's messages with the
project's chat template, generate, and write finished results in shards. This
package imports only the standard library at module level, because the vLLM worker
imports it inside the vLLM environment, which has no axolotl.
"""
