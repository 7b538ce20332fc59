"""Propose: experiment files -> `Experiment` + lint findings.

Reads `experiments/` (YAML with locations, defaults merged, the cluster profile), checks
it (the schemas, LLaMA-Factory's arguments, the rules in `rules/`), and says which
experiments a change touches (`changes`). Importing LLaMA-Factory / LLaMA Board configs
as experiments lives here too (`board`, `importsrc`, `importer`, `fix`); exporting renders,
so it is `render.manifests.export`. Nothing here renders, launches or records.
"""
