"""Record: what happened to each run.

The typed run identity, the `RunRecord` (run.json beside the artifacts), the post-run hook
that builds it, artifact storage, and `outputs-index/`: `index` is the one reader and
writer of its entries, `publish` lands them on a git remote, `destination` decides where a
record goes. The lowest stage: it imports no other stage (one deliberate exception:
writing entries regenerates the READMEs, which `render.browse` draws).
"""
