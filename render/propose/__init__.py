"""Propose: experiment files -> `Experiment` + lint findings.

Reads `experiments/` (YAML with locations, defaults merged, the cluster profile), checks
it (the schemas, LLaMA-Factory's arguments, the rules in `rules/`), and says which
experiments a change touches (`changes`). Nothing here renders, launches or records.
"""
